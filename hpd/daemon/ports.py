"""The interfaces the daemon's parts are given, so each can be driven alone with fakes.

``EngineApi`` is what a request handler may ask of the engine (the mutex and the commits that
go with a decision, stopping segments, waking the scheduler); ``Launcher`` is how the engine
runs a segment (real processes in ``hpd.daemon.launcher``; tests pass a fake). Declarations
only: no behaviour here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hpd.core.events import Event
from hpd.core.experiment import Experiment
from hpd.core.records import NewEvent, Op
from hpd.daemon.state import Running
from hpd.daemon.workers import Identity, Launch, Outcome
from hpd.io.gpus import Lease


class EngineApi(Protocol):
    @property
    def mutex(self) -> asyncio.Lock:
        """Held while the ladders decide and their decisions commit (one at a time)."""
        ...

    async def commit(self, label: str, ops: Sequence[Op]) -> None:
        """Commit ``ops`` with the deferred writes, in one transaction. Call under the mutex."""
        ...

    def event(self, exp_id: int, trial_id: int | None, ev: Event) -> NewEvent: ...

    def wake(self) -> None:
        """Ask for a scheduling pass (a slot or a search may have work)."""
        ...

    def request_stop(self, run: Running, reason: str) -> None: ...

    def prewarm(self, exp: Experiment) -> None:
        """Start, in the background, what the experiment's first segments will need."""
        ...

    async def notify_ended(self) -> None:
        """Wake whoever waits for an experiment to end."""
        ...


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a launcher readied for a segment before its attempt is recorded."""

    identity: Identity | None = None  # the process that will run it, if it already exists
    worker: Any = None  # the launcher's own handle on that process


Started = Callable[[Identity], Awaitable[None]]


class Launcher(Protocol):
    async def prepare(self, exp: Experiment, lease: Lease) -> Prepared:
        """Ready a segment's process (a warm worker for an entrypoint trial)."""
        ...

    async def run(
        self, run: Running, launch: Launch, prepared: Prepared, started: Started
    ) -> Outcome:
        """Run one segment to its end. Sets ``run.proc`` so it can be signalled, and calls
        ``started`` with a new process's identity (a command's) before waiting on it."""
        ...

    async def prewarm(self, exp: Experiment, leases: Sequence[Lease]) -> None: ...

    def discard(self, lease: Lease) -> None:
        """Forget the process behind ``lease`` (it died)."""
        ...

    async def close(self) -> None: ...
