"""``HpdApp``: the main screen (experiments, trials, ladder, GPUs, subset timings, curves).

Data flow: one exclusive ``poll`` worker asks the daemon (through a ``Source``, normally
``hpd.client.AsyncClient``) about once a second and posts ``DaemonPolled`` /
``ExperimentPolled``; the message handlers hand the data to the widgets, which diff it
against what they show. Actions (pause, resume, cancel, submit) run in their own workers and
kick an immediate poll. When the daemon is away the banner shows and the poll keeps retrying.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from hpd.errors import DaemonNotRunning, HpdError
from tui.messages import DaemonBack, DaemonLost, DaemonPolled, ExperimentPolled
from tui.screens import ConfirmScreen, SubmitScreen, TrialDetailScreen
from tui.source import Source
from tui.widgets.banner import Banner
from tui.widgets.curves import CurvesView
from tui.widgets.experiments import ExperimentsTable
from tui.widgets.gpus import GpusView
from tui.widgets.ladder import LadderView
from tui.widgets.subset import SubsetTable
from tui.widgets.trials import TrialsPanel

POLL_S = 0.7
CALL_TIMEOUT_S = 5.0
LIVE_CURVES = 8


def pick_experiment(experiments: list[dict[str, Any]]) -> int | None:
    """The experiment to open at start: the newest running one, else paused, else the newest."""
    for wanted in (("running",), ("paused",), None):
        ids = [int(e["id"]) for e in experiments if wanted is None or e.get("state") in wanted]
        if ids:
            return max(ids)
    return None


class HpdApp(App[None]):
    """Watch and steer the daemon's searches."""

    CSS_PATH = "hpd.tcss"
    TITLE = "hpd"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("p", "confirm('pause')", "pause"),
        Binding("r", "confirm('resume')", "resume"),
        Binding("c", "confirm('cancel')", "cancel"),
        Binding("n", "submit", "submit spec"),
        Binding("slash", "filter", "filter"),
        Binding("s", "sort", "sort"),
        Binding("space", "mark", "mark curve"),
        Binding("e", "focus_pane('experiments')", "experiments", show=False),
        Binding("t", "focus_pane('trials-table')", "trials", show=False),
    ]

    def __init__(self, source: Source, poll_s: float = POLL_S) -> None:
        super().__init__()
        self.source = source
        self.poll_s = poll_s
        self.exp_id: int | None = None
        self.status: dict[str, Any] = {}
        self.trials: list[dict[str, Any]] = []
        self.lost = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Banner(id="banner")
        with Horizontal(id="top"):
            yield ExperimentsTable(id="experiments")
            yield GpusView(id="gpus")
        with Horizontal(id="middle"):
            yield TrialsPanel(id="trials")
            with Vertical(id="side"):
                yield LadderView(id="ladder")
                yield SubsetTable(id="subset")
                yield CurvesView(id="curves")
        yield Footer()

    def on_mount(self) -> None:
        titles = {
            "experiments": "experiments (enter: open)",
            "gpus": "GPUs / slots",
            "trials": "trials (enter: detail, space: mark, /: filter, s: sort)",
            "ladder": "ladder (rung: results, green = promoted)",
            "subset": "subset timings",
            "curves": "learning curves",
        }
        for wid, title in titles.items():
            self.main.query_one(f"#{wid}").border_title = title
        self.main.query_one(Banner).reason = None
        self.poll()

    # -- polling -------------------------------------------------------------------------

    async def call(self, op: str, **args: Any) -> Any:
        """One daemon call with a timeout; a hung daemon counts as an absent one."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await self.source.call(op, **args)
        except asyncio.CancelledError:
            # A cancelled call (an exclusive poll restarted) leaves its answer unread on the
            # connection, and AsyncClient does not match answers to requests: drop it.
            await self.source.close()
            raise
        except TimeoutError:
            await self.source.close()
            raise DaemonNotRunning(f"no answer to {op!r} within {CALL_TIMEOUT_S:g} s") from None
        except OSError as exc:
            await self.source.close()
            raise DaemonNotRunning(str(exc)) from exc

    @work(exclusive=True, group="poll")
    async def poll(self) -> None:
        while True:
            try:
                await self.poll_once()
                if self.lost:
                    self.post_message(DaemonBack())
            except DaemonNotRunning as exc:
                self.post_message(DaemonLost(str(exc)))
            except HpdError as exc:
                self.notify(str(exc), severity="warning", timeout=3)
            await asyncio.sleep(self.poll_s)

    async def poll_once(self) -> None:
        experiments = await self.call("ls")
        gpus = await self.call("gpus")
        self.post_message(DaemonPolled(experiments, gpus))
        if self.exp_id is None:
            self.exp_id = pick_experiment(experiments)
        if self.exp_id is None:
            return
        exp = self.exp_id
        status = await self.call("status", exp=exp)
        trials = await self.call("trials", exp=exp)
        ladder = await self.call("ladder", exp=exp)
        ids = self.curve_ids(trials)
        got = await self.call("metrics", trials=ids) if ids else {}
        curves = {int(k): v for k, v in got.items()}
        self.post_message(ExperimentPolled(status, trials, ladder, curves))

    def curve_ids(self, trials: list[dict[str, Any]]) -> list[int]:
        """Marked trials, plus running ones (their ``latest`` column and live curves)."""
        marked = self.main.query_one(TrialsPanel).marked
        running = [t["id"] for t in trials if t["state"] == "running"]
        return sorted(set(marked) | set(running))

    # -- data in -------------------------------------------------------------------------

    def on_daemon_polled(self, msg: DaemonPolled) -> None:
        if self.closing or not self._mounted_main():
            return
        self.main.query_one(ExperimentsTable).show(msg.experiments)
        self.main.query_one(GpusView).slots = msg.gpus

    def _mounted_main(self) -> bool:
        # A poll answered while the app shuts down finds its widgets already removed.
        return bool(self.screen_stack) and bool(self.main.query(ExperimentsTable))

    def on_experiment_polled(self, msg: ExperimentPolled) -> None:
        if msg.status.get("id") != self.exp_id or self.closing or not self._mounted_main():
            return
        self.status, self.trials = msg.status, msg.trials
        self.sub_title = f"#{msg.status['id']} {msg.status['name']} · {msg.status['state']}"
        panel = self.main.query_one(TrialsPanel)
        panel.show(msg.status, msg.trials, msg.ladder, msg.curves)
        self.main.query_one(LadderView).rows = msg.ladder
        self.main.query_one(SubsetTable).show(msg.trials)
        curves = self.main.query_one(CurvesView)
        curves.metric = msg.status["metric"]
        shown = sorted(panel.marked) or sorted(msg.curves)[:LIVE_CURVES]
        curves.curves = {i: msg.curves[i] for i in shown if i in msg.curves}

    @property
    def main(self) -> Screen[Any]:
        """The main screen, also while a modal or a trial's detail is on top of it."""
        return self.screen_stack[0]

    @property
    def closing(self) -> bool:
        """True once the app is shutting down: polls still in flight are dropped."""
        return self._exit or not self.screen_stack

    def on_daemon_lost(self, msg: DaemonLost) -> None:
        if self.closing:
            return
        self.lost = True
        self.main.query_one(Banner).reason = msg.reason

    def on_daemon_back(self, _: DaemonBack) -> None:
        self.lost = False
        self.main.query_one(Banner).reason = None
        self.notify("daemon reachable again", timeout=2)

    # -- selection -----------------------------------------------------------------------

    @on(DataTable.RowSelected, "#experiments")
    def open_experiment(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.open(int(event.row_key.value))

    def open(self, exp_id: int) -> None:
        """Show experiment ``exp_id`` (trials, ladder, subset, curves) and poll it now."""
        self.exp_id = exp_id
        self.main.query_one(TrialsPanel).marked.clear()
        self.poll()

    @on(DataTable.RowSelected, "#trials-table")
    def open_trial(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        trial = next((t for t in self.trials if str(t["id"]) == key), None)
        if trial is not None and self.exp_id is not None:
            metric = self.status.get("metric", "loss")
            self.push_screen(TrialDetailScreen(self.source, self.exp_id, trial, metric))

    # -- actions -------------------------------------------------------------------------

    def action_confirm(self, op: str) -> None:
        if self.exp_id is None:
            self.notify("no experiment open", severity="warning")
            return
        exp, name = self.exp_id, self.status.get("name", "")

        def done(yes: bool | None) -> None:
            if yes:
                self.experiment_op(op, exp)

        self.push_screen(ConfirmScreen(f"{op.capitalize()} experiment #{exp} {name}?"), done)

    @work(group="action")
    async def experiment_op(self, op: str, exp: int) -> None:
        try:
            result = await self.call(op, exp=exp)
        except HpdError as exc:
            self.notify(str(exc), title=f"{op} failed", severity="error")
            return
        self.notify(f"experiment #{exp} is {result.get('state', op)}")
        self.poll()

    def action_submit(self) -> None:
        def done(path: str | None) -> None:
            if path:
                self.submit_spec(path)

        self.push_screen(SubmitScreen(), done)

    @work(group="action")
    async def submit_spec(self, path: str) -> None:
        try:
            exp = await self.source.submit(path)
        except (HpdError, OSError, ValueError) as exc:
            self.notify(str(exc), title="submit failed", severity="error", timeout=8)
            return
        self.notify(f"submitted {path} as experiment #{exp.id}")
        self.open(int(exp.id))

    def action_filter(self) -> None:
        self.main.query_one("#filter", Input).focus()

    def action_focus_pane(self, wid: str) -> None:
        self.main.query_one(f"#{wid}").focus()

    def action_sort(self) -> None:
        table = self.main.query_one(TrialsPanel).table
        cols = [str(c.value) for c in table.columns]
        nxt = (
            cols[(cols.index(table.sort_column) + 1) % len(cols)]
            if table.sort_column in cols
            else cols[0]
        )
        table.sort_by(nxt)
        arrow = "↓" if table.sort_reverse else "↑"
        self.main.query_one(TrialsPanel).border_subtitle = f"sorted by {nxt} {arrow}"

    def action_mark(self) -> None:
        panel = self.main.query_one(TrialsPanel)
        key = panel.table.current_key
        if key is None:
            return
        tid = int(key)
        panel.marked.symmetric_difference_update({tid})
        self.poll()


def run(state_dir: str | None) -> None:
    """``hpd tui``: open the UI on the daemon of ``state_dir`` (or the default one)."""
    from hpd.client import AsyncClient

    HpdApp(AsyncClient(state_dir)).run()
