"""The GPU panel shows each slot's Ray node when the daemon runs on a cluster, and no node
column on one machine."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from tui.widgets.gpus import gpu_table


def _render(slots: list[dict[str, Any]]) -> str:
    console = Console(width=100, record=True, color_system=None)
    console.print(gpu_table(slots))
    return console.export_text()


def _slot(name: str, node: str | None) -> dict[str, Any]:
    return {"slot": name, "node": node, "utilization": None, "memory_used_mb": 0,
            "memory_total_mb": 0, "trials": [3]}


def test_slots_by_node_on_a_cluster() -> None:
    text = _render([_slot("gpu0:0", "a1b2c3d4 10.0.0.1"), _slot("gpu4:0", "e5f6a7b8 10.0.0.2")])
    assert "node" in text.splitlines()[0]
    assert "a1b2c3d4 10.0.0.1" in text and "e5f6a7b8 10.0.0.2" in text


def test_no_node_column_on_one_machine() -> None:
    text = _render([_slot("gpu0:0", None)])
    assert "node" not in text.splitlines()[0] and "gpu0:0" in text
