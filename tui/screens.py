"""Modal and detail screens: confirmation, spec submission, and one trial's detail.

The detail screen polls the daemon for that one trial only (its events, curve and log tail)
in its own exclusive worker, so the main screen's poll stays cheap.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Label, Log, Static

from hpd.errors import HpdError
from tui.format import fmt
from tui.source import Source
from tui.widgets.curves import CurvesView

LOG_LINES = 200
POLL_S = 1.0


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no question; ``y``/``n`` (or Escape) answer it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "yes"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Grid(id="dialog"):
            yield Label(self.question, id="question")
            yield Button("Yes (y)", variant="error", id="yes")
            yield Button("No (n)", variant="primary", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class SubmitScreen(ModalScreen[str | None]):
    """Ask for a spec file path; Enter submits it, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Submit a search spec (TOML/YAML/JSON file):")
            yield Input(placeholder="path/to/spec.toml", id="path")

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def params_table(trial: dict[str, Any]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in (trial.get("params") or {}).items():
        table.add_row(k, fmt(v, 6))
    table.add_row("", "")
    for k in ("state", "rung", "resource", "epoch", "gpu", "attempts", "restarts", "error"):
        table.add_row(k, fmt(trial.get(k)))
    for rung, value in (trial.get("results") or {}).items():
        table.add_row(f"rung {rung}", fmt(value, 6))
    return table


def event_line(ev: dict[str, Any]) -> Text:
    """One event, with the reason a promotion (or stop) happened spelled out."""
    kind = ev["type"]
    text = Text(f"{ev['seq']:>6} ", "dim")
    text.append(kind, "bold cyan" if kind == "promoted" else "red" if "fail" in kind else "")
    skip = {"seq", "time", "type", "trial", "reason", "params", "gpus", "proposal"}
    text.append(" " + " ".join(f"{k}={fmt(v)}" for k, v in ev.items() if k not in skip))
    proposal = ev.get("proposal")
    if isinstance(proposal, dict) and proposal.get("summary"):
        text.append(f" — proposed by {proposal['summary']}", "magenta")
    reason = ev.get("reason")
    if isinstance(reason, dict):
        why = (
            f" — rank {reason.get('rank')} of {reason.get('population')} at rung "
            f"{ev.get('rung')}, top {reason.get('cutoff')} make it (cutoff "
            f"{fmt(reason.get('cutoff_value'))}){' [drain]' if reason.get('drain') else ''}"
        )
        text.append(why, "green")
    elif reason is not None:
        text.append(f" — {reason}", "yellow")
    return text


class TrialDetailScreen(Screen[None]):
    """One trial: params and results, its events with reasons, its curve and log tail."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,backspace", "app.pop_screen", "back")]

    def __init__(self, source: Source, exp_id: int, trial: dict[str, Any], metric: str) -> None:
        super().__init__()
        self.source, self.exp_id, self.trial, self.metric = source, exp_id, trial, metric
        self.seq = 0
        self.log_offset = 0
        self.event_lines: list[Text] = []

    def compose(self) -> ComposeResult:
        yield Static(f" Trial #{self.trial['id']} of experiment {self.exp_id}", id="detail-title")
        with Horizontal():
            with VerticalScroll(id="detail-params"):
                yield Static(params_table(self.trial), id="params")
            with Vertical(id="detail-right"):
                yield CurvesView(id="detail-curve")
                yield Static(id="detail-events")
                yield Log(id="detail-log", max_lines=LOG_LINES)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#detail-curve", CurvesView).metric = self.metric
        self.query_one("#detail-params").border_title = "params"
        self.query_one("#detail-curve").border_title = "learning curve"
        self.query_one("#detail-events").border_title = "events"
        self.query_one("#detail-log").border_title = "log (tail)"
        self.poll()

    @work(exclusive=True, group="detail")
    async def poll(self) -> None:
        while self.is_attached:
            try:
                await self._fetch()
            except NoMatches:
                return  # popped while a fetch was in flight
            except HpdError as exc:
                self.notify(str(exc), severity="warning", timeout=2)
            await asyncio.sleep(POLL_S)

    async def _fetch(self) -> None:
        tid = self.trial["id"]
        evs = await self.source.call("events", exp=self.exp_id, after=self.seq)
        if evs:
            self.seq = evs[-1]["seq"]
            self.event_lines += [event_line(e) for e in evs if e.get("trial") == tid]
            self.query_one("#detail-events", Static).update(Text("\n").join(self.event_lines[-60:]))
        curves = await self.source.call("metrics", trials=[tid])
        self.query_one(CurvesView).curves = {tid: curves.get(str(tid), [])}
        log = await self.source.call("logs", trial=tid, offset=self.log_offset)
        if log["text"]:
            self.query_one(Log).write(log["text"])
        self.log_offset = log["offset"]
        trials = await self.source.call("trials", exp=self.exp_id)
        for t in trials:
            if t["id"] == tid and t != self.trial:
                self.trial = t
                self.query_one("#params", Static).update(params_table(t))
