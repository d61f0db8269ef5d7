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
    """The synthetic search with 0.2 s epochs: still running while the tests look at it."""
    spec = synthetic_spec()
    spec["space"] = {**spec["space"], **LIVE}  # type: ignore[dict-item]
    spec["searcher"]["max_trials"] = max_trials  # type: ignore[index]
    return spec
