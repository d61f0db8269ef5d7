"""``GpusView``: each slot's GPU utilisation and memory bars and the trials holding it (and the
Ray node it lives on, for a daemon started with ``--ray``)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tui.format import bar

BAR = 10


def _meter(value: float | None, total: float | None, width: int = BAR) -> Text:
    if value is None or not total:
        return Text("-".ljust(width + 5), "dim")
    frac = value / total
    style = "red" if frac > 0.9 else "yellow" if frac > 0.6 else "green"
    return Text.assemble((bar(frac, width), style), f" {frac * 100:3.0f}%")


def gpu_table(slots: list[dict[str, Any]]) -> Table:
    table = Table(expand=True, box=None, pad_edge=False, header_style="bold")
    by_node = any(s.get("node") for s in slots)  # on a Ray cluster (hpd start --ray)
    if by_node:
        table.add_column("node", no_wrap=True)
    table.add_column("slot", no_wrap=True)
    table.add_column("util", no_wrap=True)
    table.add_column("mem", no_wrap=True)
    table.add_column("trials", no_wrap=True)
    for s in slots:
        held = ",".join(f"#{t}" for t in s.get("trials") or []) or Text("idle", "dim")
        table.add_row(
            *([str(s.get("node") or "")] if by_node else []),
            str(s["slot"]),
            _meter(s.get("utilization"), 100),
            _meter(s.get("memory_used_mb"), s.get("memory_total_mb")),
            held,
        )
    return table


class GpusView(Static):
    """The daemon's slots (``gpus`` op), refreshed with every daemon poll."""

    slots: reactive[list[dict[str, Any]]] = reactive(list, always_update=False)

    def watch_slots(self, slots: list[dict[str, Any]]) -> None:
        self.update(gpu_table(slots) if slots else Text("no slots", "dim"))
