"""Waiting helpers for Pilot tests: poll a condition while the app keeps running."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot


async def until(pilot: Pilot[None], cond: Callable[[], object], limit: float = 15.0) -> None:
    """Let the app run until ``cond()`` is truthy; fail the test after ``limit`` seconds."""
    loop_time = 0.0
    while not cond():
        if loop_time > limit:
            raise AssertionError(f"condition not met within {limit} s")
        await pilot.pause(0.05)
        loop_time += 0.05
