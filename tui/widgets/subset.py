"""``SubsetTable``: subset-loader timings per trial (strategy, fraction, seconds, time saved)."""

from __future__ import annotations

from typing import Any

from tui.format import SUBSET_COLUMNS, subset_row
from tui.widgets.table import SyncTable


class SubsetTable(SyncTable):
    """Trials that report a ``subset`` timing record; empty (with a note) when none do."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(SUBSET_COLUMNS, **kw)

    def show(self, trials: list[dict[str, Any]]) -> None:
        self.sync({str(t["id"]): subset_row(t) for t in trials if t.get("subset")})
        self.border_subtitle = "" if self.row_count else "no trial uses a subset loader"
