"""Snapshot tests of the main screens against ``tui.testing.FakeClient`` (fixed data)."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from tests.tui.helpers import until
from tui.app import HpdApp
from tui.screens import TrialDetailScreen
from tui.testing import FakeClient
from tui.widgets.banner import Banner

SIZE = (160, 45)


def _app(fake: FakeClient | None = None) -> HpdApp:
    return HpdApp(fake or FakeClient(), poll_s=0.3)


async def _loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, HpdApp)
    await until(pilot, lambda: app.trials and app.main.query_one("#trials-table").row_count)
    await pilot.pause(0.2)


class TestMainScreen:
    def test_main(self, snap_compare: Any) -> None:
        """Experiments, GPUs, trials, ladder, subset timings and curves on one screen."""
        assert snap_compare(_app(), terminal_size=SIZE, run_before=_loaded)

    def test_filtered_and_sorted(self, snap_compare: Any) -> None:
        """A filter narrows the trials; ``s`` sorts them by the next column."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            await pilot.press("slash", *"paused", "enter", "s", "s")
            await pilot.pause(0.2)

        assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)

    def test_banner(self, snap_compare: Any) -> None:
        """With the daemon gone the banner says so and the last data stays on screen."""
        fake = FakeClient()

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            fake.down = True
            await until(pilot, lambda: pilot.app.main.query_one(Banner).display)
            await pilot.pause(0.1)

        assert snap_compare(_app(fake), terminal_size=SIZE, run_before=run_before)


class TestDialogs:
    def test_confirm_pause(self, snap_compare: Any) -> None:
        """``p`` asks before pausing."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            await pilot.press("p")

        assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)

    def test_submit(self, snap_compare: Any) -> None:
        """``n`` asks for a spec path."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            await pilot.press("n", *"examples/synthetic/spec.toml")

        assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)

    def test_trial_detail(self, snap_compare: Any) -> None:
        """Enter on a trial shows its params, curve, events with reasons and log tail."""

        async def run_before(pilot: Pilot[Any]) -> None:
            await _loaded(pilot)
            await pilot.press("t", "down", "down", "enter")
            await until(pilot, lambda: isinstance(pilot.app.screen, TrialDetailScreen))
            await pilot.pause(0.4)

        assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)


async def test_fake_actions_change_state() -> None:
    """Pause then resume through the dialogs reach the (fake) daemon."""
    fake = FakeClient()
    app = _app(fake)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await pilot.press("p", "y")
        await until(pilot, lambda: fake.states[1] == "paused")
        await pilot.press("r", "y")
        await until(pilot, lambda: fake.states[1] == "running")
        await pilot.press("n", *"spec.toml", "enter")
        await until(pilot, lambda: fake.submitted == ["spec.toml"] and app.exp_id == 4)
