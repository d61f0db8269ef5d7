"""``ExperimentsTable``: every experiment the daemon knows, selectable to open it."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from tui.format import experiment_row
from tui.widgets.table import SyncTable

COLUMNS = ("id", "name", "state", "progress (done/max, by state)", "best", "elapsed")
STYLE = {"running": "bold green", "paused": "yellow", "completed": "blue", "failed": "red"}


def style_cell(column: str, value: str) -> Text | str:
    if column == "state":
        return Text(value, STYLE.get(value, "magenta"))
    return value


class ExperimentsTable(SyncTable):
    """``ls`` rows; Enter (or a click) on one posts ``RowSelected`` for the app to open it."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(COLUMNS, styler=style_cell, **kw)

    def show(self, experiments: list[dict[str, Any]]) -> None:
        self.sync({str(e["id"]): experiment_row(e) for e in experiments})
