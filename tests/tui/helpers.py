"""Waiting helpers for Pilot tests: poll a condition while the app keeps running."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.pilot import Pilot

from tests.waits import WAIT_S


async def until(pilot: Pilot[None], cond: Callable[[], object], limit: float = WAIT_S) -> None:
    """Let the app run until ``cond()`` is truthy; fail the test after ``limit`` s of wall time.

    The deadline is ``time.monotonic()``, not a count of pauses: on a loaded machine one
    ``pilot.pause(0.05)`` (which first waits for the screen to handle its pending messages)
    takes far longer than 0.05 s, and the limit must mean seconds.
    """
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {limit:g} s")
        await pilot.pause(0.05)
