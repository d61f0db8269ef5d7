"""Pilot tests of every view and action against a real daemon (fake GPUs, a live search)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Log, Static

from hpd.client import AsyncClient
from tests.conftest import REPO
from tests.tui.conftest import live_spec
from tests.tui.helpers import until
from tui.app import HpdApp
from tui.screens import ConfirmScreen, SubmitScreen, TrialDetailScreen
from tui.widgets.banner import Banner
from tui.widgets.curves import CurvesView
from tui.widgets.experiments import ExperimentsTable
from tui.widgets.gpus import GpusView
from tui.widgets.ladder import LadderView
from tui.widgets.subset import SubsetTable
from tui.widgets.trials import TrialsPanel

SIZE = (160, 45)

# Each test waits for several things in turn (each wait up to tests.waits.WAIT_S); on a loaded
# machine they add up to more than pytest's default 120 s per test.
pytestmark = pytest.mark.timeout(300)


def _app(daemon: Any) -> HpdApp:
    return HpdApp(AsyncClient(daemon.state), poll_s=0.2)


def _text(widget: Static) -> str:
    return str(widget.render())


async def test_every_view_renders_a_live_search(daemon: Any) -> None:
    """Experiments, trials, ladder, GPUs, subset, curves and trial detail all show data."""
    daemon.client().submit(live_spec(max_trials=81))
    app = _app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        trials = app.query_one(TrialsPanel).table
        await until(pilot, lambda: trials.row_count > 0 and app.query_one(CurvesView).curves)
        assert app.query_one(ExperimentsTable).row_count == 1
        assert "synthetic" in app.sub_title
        assert len(app.query_one(LadderView).rows) >= 2
        slots = app.query_one(GpusView).slots
        assert [s["slot"] for s in slots][:4] == ["gpu0:0", "gpu1:0", "gpu2:0", "gpu3:0"]
        await until(pilot, lambda: any(s["trials"] for s in app.query_one(GpusView).slots))
        states = {str(trials.get_row(k)[1]) for k in trials.rows}
        assert states & {"running", "queued", "paused", "promotable"}
        assert app.query_one(SubsetTable).border_subtitle == "no trial uses a subset loader"
        # Keys go to whatever has the focus when the app reads them, and a focus change takes
        # effect a message later: a key that follows one needs a wait for the focus first.
        # (Pilot's own wait between keys is "until the process looks idle", which a starved
        # process on a loaded machine looks all the time.)
        await pilot.press("slash")
        filt = app.query_one("#filter", Input)
        await until(pilot, lambda: app.focused is filt)
        await pilot.press(*"running", "enter")
        running = {"running"}
        await until(pilot, lambda: {str(trials.get_row(k)[1]) for k in trials.rows} == running)
        await until(pilot, lambda: app.focused is trials)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TrialDetailScreen))
        screen = app.screen
        await until(
            pilot, lambda: "segment_started" in _text(screen.query_one("#detail-events", Static))
        )
        await until(pilot, lambda: screen.query_one(Log).line_count > 0)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, TrialDetailScreen))


async def test_pause_resume_cancel_with_confirmation(daemon: Any) -> None:
    """Each action asks first; answering yes changes the experiment's state in the daemon."""
    exp = daemon.client().submit(live_spec(max_trials=81))
    app = _app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.exp_id == exp.id and app.status)
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        # "n" must not pause. No window of time to watch: the dialog's answer reaches the app
        # by its next idle moment, and a "yes" would start the pause in an "action" worker at
        # once; that worker is either still running (seen here) or has paused the experiment
        # in the daemon (seen below).
        await pilot.pause()
        assert not [w for w in app.workers if w.group == "action"]
        assert exp.status()["state"] == "running"
        for key, state in (("p", "paused"), ("r", "running"), ("c", "cancelled")):
            await pilot.press(key)
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda s=state: exp.status()["state"] == s)
            await until(pilot, lambda s=state: app.status.get("state") == s)


async def test_submit_a_spec_file_and_open_experiments(
    daemon: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``n`` submits a spec path; selecting an experiment row opens that experiment."""
    daemon.client().submit(live_spec())
    text = (REPO / "examples/synthetic/spec.toml").read_text()
    spec = tmp_path / "spec.toml"
    spec.write_text(text.replace('workdir = "../.."', f'workdir = "{REPO}"'))
    # A relative path (the client resolves it against its own cwd): each key a test presses
    # can take a second on a loaded machine, and tmp_path's absolute path is some 70 keys.
    monkeypatch.chdir(tmp_path)
    app = _app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.exp_id == 1)
        await pilot.press("n")  # then wait for the dialog's input to have the focus, as above
        await until(pilot, lambda: isinstance(app.focused, Input) and app.focused.id == "path")
        assert isinstance(app.screen, SubmitScreen)
        await pilot.press(*spec.name, "enter")
        await until(pilot, lambda: app.exp_id == 2 and app.status.get("id") == 2)
        table = app.query_one(ExperimentsTable)
        await until(pilot, lambda: table.row_count == 2)
        table.focus()
        table.move_cursor(row=table.get_row_index("1"))
        await until(pilot, lambda: app.focused is table)
        await pilot.press("enter")
        await until(pilot, lambda: app.exp_id == 1 and app.sub_title.startswith("#1 "))


async def test_banner_when_the_daemon_stops_and_reconnect(daemon: Any) -> None:
    """Stopping the daemon shows the banner; starting it again hides it and data flows."""
    app = _app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        banner = app.query_one(Banner)
        await until(pilot, lambda: app.query_one(GpusView).slots)
        assert not banner.display
        daemon.stop()
        await until(pilot, lambda: banner.display)
        assert "daemon not reachable — retrying" in _text(banner)
        daemon.start()
        await until(pilot, lambda: not banner.display)


async def test_q_quits(daemon: Any) -> None:
    """``q`` ends the app."""
    app = _app(daemon)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
