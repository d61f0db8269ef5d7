"""TUI fixtures: a frozen cursor blink (deterministic snapshots) and a live search to watch."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tests.conftest import synthetic_spec

LIVE = {"sleep": {"type": "choice", "values": [0.2]}}


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blinking cursor makes snapshot tests nondeterministic."""
    monkeypatch.setattr(Input, "cursor_blink", False)


def live_spec(max_trials: int = 27) -> dict[str, object]:
    """The synthetic search with 0.2 s epochs, still running while the tests look at it.

    Its trials (``tests.tui.trials:held``) hold their top-rung epoch until asked to stop, so
    the search cannot end before the test does, whatever the load: 81 trials of 0.2 s epochs
    end in some 15 s of their own, and a test on a busy machine can take longer than that to
    press its keys.
    """
    spec = synthetic_spec(entrypoint="tests.tui.trials:held")
    top = spec["searcher"]["max_resource"]
    hold = {"hold_at": {"type": "choice", "values": [top]}}
    spec["space"] = {**spec["space"], **LIVE, **hold}
    spec["searcher"]["max_trials"] = max_trials
    return spec
