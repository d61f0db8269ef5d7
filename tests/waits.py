"""Wall-clock waits for the whole suite: every wait is a deadline on a condition.

A test never sleeps "long enough" for something to happen: it polls the condition it needs
until a ``time.monotonic()`` deadline, so it goes on the moment the condition holds and only
a real failure uses up the limit. The limits are generous on purpose: CI runs the suite on a
busy 2-core machine, where starting a daemon, a trial's Python or a TUI poll can take many
times as long as on an idle one. (The TUI's Pilot tests use ``tests.tui.helpers.until``, the
same deadline for an async test that must keep the app running while it waits.)

The one exception is a check that something does NOT happen, which needs a window of time to
watch; ``holds_for`` is that window, and each use says why its length is enough.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The default limit on one wait: far above what any healthy wait takes even under heavy load,
# and below pytest's 120 s per-test timeout (pyproject), so a stuck wait fails with its own
# message. A test whose waits add up to more raises its own @pytest.mark.timeout.
WAIT_S = 90.0
POLL_S = 0.05


def wait_until(
    cond: Callable[[], T],
    timeout: float = WAIT_S,
    *,
    what: str = "condition",
    detail: Callable[[], object] | None = None,
    interval: float = POLL_S,
) -> T:
    """Poll ``cond()`` until it returns something truthy (returned); fail after ``timeout`` s.

    ``what`` names the condition in the failure message; ``detail()`` (e.g. a daemon's log
    tail) is added to it. ``cond`` may raise to fail at once (e.g. when a process has died).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"{what} not met within {timeout:g} s{extra}")
        time.sleep(interval)


def holds_for(
    cond: Callable[[], object],
    seconds: float,
    *,
    what: str = "condition",
    interval: float = POLL_S,
) -> None:
    """Assert ``cond()`` stays truthy throughout a window of ``seconds`` (wall clock).

    Only for checking that something does not happen. The window bounds how long the test
    watches, so under load it may see less of the system's activity; it cannot make a
    correct system fail.
    """
    deadline = time.monotonic() + seconds
    while True:
        assert cond(), f"{what} stopped holding within the {seconds:g} s window"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


async def wait_until_async(
    cond: Callable[[], object],
    limit: float = WAIT_S,
    *,
    what: str = "condition",
    interval: float = POLL_S,
) -> object:
    """``wait_until`` for a test on an event loop: polls without blocking the loop, so the
    code under test runs while it waits. ``cond`` may return an awaitable (awaited)."""
    deadline = time.monotonic() + limit
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {limit:g} s")
        await asyncio.sleep(interval)
