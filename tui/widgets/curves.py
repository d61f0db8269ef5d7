"""``CurvesView``: learning curves (every reported epoch) of the marked trials, in braille."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tui.format import braille_plot, fmt, number

COLOURS = ("cyan", "magenta", "green", "yellow", "red", "blue", "bright_white", "bright_green")
AXIS = 8


def curve_points(curve: list[dict[str, Any]], metric: str) -> list[tuple[float, float]]:
    pts = []
    for point in curve:
        x, y = number(point.get("epoch")), number(point.get(metric))
        if x is not None and y is not None:
            pts.append((x, y))
    return pts


def render_curves(
    curves: dict[int, list[dict[str, Any]]], metric: str, width: int, height: int
) -> Text:
    """The plot with a y axis on the left and a legend line below."""
    ids = sorted(curves)
    series = [curve_points(curves[i], metric) for i in ids]
    if not any(series):
        return Text("no curves yet: mark trials with space", "dim")
    plot = braille_plot(series, max(width - AXIS - 1, 4), max(height - 2, 2))
    x0, x1, y0, y1 = plot.bounds
    out = Text()
    for r, row in enumerate(plot.rows):
        label = fmt(y1, 3) if r == 0 else fmt(y0, 3) if r == len(plot.rows) - 1 else ""
        out.append(label.rjust(AXIS) + "│", "dim")
        for c, ch in enumerate(row):
            owner = plot.owners[r][c]
            out.append(ch, COLOURS[owner % len(COLOURS)] if owner >= 0 else "")
        out.append("\n")
    out.append(" " * AXIS + f"└ epoch {fmt(x0)}…{fmt(x1)}  ", "dim")
    for i, tid in enumerate(ids):
        out.append(f"#{tid} ", COLOURS[i % len(COLOURS)])
    return out


class CurvesView(Static):
    """Curves by trial id; re-rendered when the curves or the widget's size change."""

    curves: reactive[dict[int, list[dict[str, Any]]]] = reactive(dict, always_update=False)
    metric: reactive[str] = reactive("loss")

    def _paint(self) -> None:
        w, h = self.content_size.width, self.content_size.height
        self.update(render_curves(self.curves, self.metric, w or 40, h or 8))

    def watch_curves(self) -> None:
        self._paint()

    def watch_metric(self) -> None:
        self._paint()

    def on_resize(self) -> None:
        self._paint()
