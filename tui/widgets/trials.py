"""``TrialsPanel``: the sortable, filterable trials table of the open experiment.

Keeps every trial's row cells and shows the ones matching the filter; the table underneath
is a ``SyncTable``, so each poll only touches the rows that changed.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input

from tui.format import (
    STATE_STYLE,
    cutoffs_by_rung,
    display_state,
    latest,
    main_params,
    matches,
    trial_columns,
    trial_row,
)
from tui.widgets.table import SyncTable


def style_cell(column: str, value: str) -> Text | str:
    if column == "state":
        return Text(value, STATE_STYLE.get(value, ""))
    return value


class TrialsPanel(Vertical):
    """Filter input (focus with ``/``) over the trials table; marked trials get a ``●``."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.rows: dict[str, tuple[str, ...]] = {}
        self.params: list[str] = []
        self.marked: set[int] = set()
        self.exp_id: int | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter trials: / (e.g. running, promotable, gpu1)", id="filter")
        yield SyncTable(trial_columns([]), styler=style_cell, id="trials-table")

    @property
    def table(self) -> SyncTable:
        return self.query_one(SyncTable)

    def show(
        self,
        status: dict[str, Any],
        trials: list[dict[str, Any]],
        ladder: list[dict[str, Any]],
        curves: dict[int, list[dict[str, Any]]],
    ) -> None:
        """Rebuild the row cells from a poll, then sync what the filter lets through."""
        if status["id"] != self.exp_id or (not self.params and trials):
            self.exp_id = status["id"]
            self.params = main_params(trials)
            self.table.set_columns(trial_columns(self.params))
        cutoffs, mode, metric = cutoffs_by_rung(ladder), status["mode"], status["metric"]
        self.rows = {}
        for t in trials:
            state = display_state(t, cutoffs, mode)
            cells = trial_row(t, self.params, state, latest(t, curves.get(t["id"]), metric))
            if t["id"] in self.marked:
                cells = (f"{cells[0]} ●", *cells[1:])
            self.rows[str(t["id"])] = cells
        self.refilter()

    def refilter(self) -> None:
        query = self.query_one("#filter", Input).value
        self.table.sync({k: v for k, v in self.rows.items() if matches(v, query)})

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.refilter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()
