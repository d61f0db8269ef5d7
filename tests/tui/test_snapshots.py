"""Snapshot tests of the main screens against ``tui.testing.FakeClient`` (fixed data)."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Log

from tests.tui.helpers import until
from tui.app import HpdApp
from tui.format import matches
from tui.screens import ConfirmScreen, SubmitScreen, TrialDetailScreen
from tui.testing import FakeClient
from tui.widgets.banner import Banner
from tui.widgets.curves import CurvesView
from tui.widgets.experiments import ExperimentsTable
from tui.widgets.gpus import GpusView
from tui.widgets.ladder import LadderView
from tui.widgets.subset import SubsetTable
from tui.widgets.trials import TrialsPanel

SIZE = (160, 45)


def _app(fake: FakeClient | None = None) -> HpdApp:
    return HpdApp(fake or FakeClient(), poll_s=0.3)


async def _loaded(pilot: Pilot[Any]) -> None:
    """Wait until every panel of the main screen shows the fake's data (its first polls).

    The fake answers the same every time, so from then on the screen does not change; the
    snapshot plugin itself waits for the app to be idle before it takes the screenshot.
    """
    app = pilot.app
    assert isinstance(app, HpdApp)

    def shown() -> bool:
        main = app.main
        return bool(
            app.trials
            and main.query_one(TrialsPanel).table.row_count == len(app.trials)
            and main.query_one(ExperimentsTable).row_count
            and main.query_one(GpusView).slots
            and main.query_one(LadderView).rows
            and main.query_one(SubsetTable).row_count
            and main.query_one(CurvesView).curves
        )

    await until(pilot, shown)


def _submit_input_focused(app: Any) -> bool:
    return isinstance(app.screen, SubmitScreen) and app.focused is app.screen.query_one(Input)


class TestMainScreen:
    def test_main(self, snap_compare: Any) -> None:
        """Experiments, GPUs, trials, ladder, subset timings and curves on one screen."""
        assert snap_compare(_app(), terminal_size=SIZE, run_before=_loaded)

    def test_filtered_and_sorted(self, snap_compare: Any) -> None:
        """A filter narrows the trials; ``s`` sorts them by the next column."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            app = pilot.app
            assert isinstance(app, HpdApp)
            panel = app.main.query_one(TrialsPanel)
            table = panel.table
            # A key goes to what has the focus when the app reads it, and a focus change
            # lands a message later: wait for it before the keys that follow ("p" of
            # "paused" would otherwise ask to pause, "s" would be typed into the filter).
            await pilot.press("slash")
            await until(pilot, lambda: app.focused is panel.query_one("#filter", Input))
            await pilot.press(*"paused", "enter")
            await until(pilot, lambda: app.focused is table)
            await pilot.press("s", "s")
            second = [str(c.value) for c in table.columns][1]  # the second "s" sorts by it

            def filtered_and_sorted() -> bool:
                want = {k for k, cells in panel.rows.items() if matches(cells, "paused")}
                return (
                    panel.query_one("#filter", Input).value == "paused"
                    and {str(k.value) for k in table.rows} == want
                    and table.sort_column == second
                    and not table.sort_reverse
                    and app.focused is table
                )

            await until(pilot, filtered_and_sorted)

        assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)

    def test_banner(self, snap_compare: Any) -> None:
        """With the daemon gone the banner says so and the last data stays on screen."""
        fake = FakeClient()

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            fake.down = True
            banner = pilot.app.main.query_one(Banner)
            await until(pilot, lambda: banner.display and "not reachable" in str(banner.render()))

        assert snap_compare(_app(fake), terminal_size=SIZE, run_before=run_before)


class TestDialogs:
    def test_confirm_pause(self, snap_compare: Any) -> None:
        """``p`` asks before pausing."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            await pilot.press("p")
            await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen))

        assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)

    def test_submit(self, snap_compare: Any) -> None:
        """``n`` asks for a spec path."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            await pilot.press("n")  # then wait for the focus, as in test_filtered_and_sorted
            await until(pilot, lambda: _submit_input_focused(pilot.app))
            await pilot.press(*"examples/synthetic/spec.toml")

            def typed() -> bool:
                screen = pilot.app.screen
                return isinstance(screen, SubmitScreen) and (
                    screen.query_one("#path", Input).value == "examples/synthetic/spec.toml"
                )

            await until(pilot, typed)

        assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)

    def test_trial_detail(self, snap_compare: Any) -> None:
        """Enter on a trial shows its params, curve, events with reasons and log tail."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            await pilot.press("t")  # then wait for the focus, as in test_filtered_and_sorted
            table = pilot.app.main.query_one(TrialsPanel).table
            await until(pilot, lambda: pilot.app.focused is table)
            await pilot.press("down", "down", "enter")
            await until(pilot, lambda: isinstance(pilot.app.screen, TrialDetailScreen))
            screen = pilot.app.screen
            assert isinstance(screen, TrialDetailScreen)

            def fetched() -> bool:
                # the detail's first fetch has shown the events, the curve and the log (the
                # trial it fetches last is the fake's, unchanged: the params stay as shown)
                return bool(
                    screen.event_lines
                    and screen.query_one("#detail-curve", CurvesView).curves
                    and screen.log_offset
                    and screen.query_one(Log).line_count
                )

            await until(pilot, fetched)

        assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)


async def test_fake_actions_change_state() -> None:
    """Pause then resume through the dialogs reach the (fake) daemon."""
    fake = FakeClient()
    app = _app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        for key, state in (("p", "paused"), ("r", "running")):
            await pilot.press(key)
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda s=state: fake.states[1] == s)
        await pilot.press("n")  # then wait for the focus, as in test_filtered_and_sorted
        await until(pilot, lambda: _submit_input_focused(app))
        await pilot.press(*"spec.toml", "enter")
        await until(pilot, lambda: fake.submitted == ["spec.toml"] and app.exp_id == 4)
