"""``LadderView``: one row per rung, with a bar per rung so the halving shows at a glance."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tui.format import bar, fmt

BAR = 20


def ladder_bar(row: dict[str, Any], most: int) -> Text:
    """Results as a bar scaled to the busiest rung, the promoted part in green."""
    results, promoted = row["results"], row["promoted"]
    text = Text()
    width = BAR if most else 0
    filled = bar(results / most, width) if most else ""
    cut = round(BAR * promoted / most) if most else 0
    text.append(filled[:cut], "green")
    text.append(filled[cut:], "bright_blue")
    return text


def ladder_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(expand=True, box=None, pad_edge=False, header_style="bold")
    brackets = len({r["bracket"] for r in rows}) > 1
    table.add_column("rung", no_wrap=True)
    table.add_column("res", justify="right", no_wrap=True)
    table.add_column("results", no_wrap=True)
    for name in ("n", "prom", "run", "cutoff", "best"):
        table.add_column(name, justify="right", no_wrap=True)
    most = max((r["results"] for r in rows), default=0)
    for r in rows:
        table.add_row(
            f"b{r['bracket']}/{r['rung']}" if brackets else str(r["rung"]),
            str(r["resource"]),
            ladder_bar(r, most),
            str(r["results"]),
            str(r["promoted"]),
            str(r["running"]),
            fmt(r.get("cutoff_value"), 3),
            fmt(r.get("best"), 3),
        )
    return table


class LadderView(Static):
    """The ASHA ladder of the open experiment (``ladder`` op rows)."""

    rows: reactive[list[dict[str, Any]]] = reactive(list, always_update=False)

    def watch_rows(self, rows: list[dict[str, Any]]) -> None:
        self.update(ladder_table(rows) if rows else Text("no rungs yet", "dim"))
