"""What the daemon holds in memory while it runs: its configuration, the live experiments, the
segments in flight, the id counters and the slots.

Plain data shared by the engine and the request handlers (which are handed it explicitly);
the database is the truth and all of this is rebuilt from it at every start. Must never do
I/O or decide anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hpd.core import asha
from hpd.core.experiment import Experiment, Trial
from hpd.core.records import Op
from hpd.io import gpus
from hpd.io.paths import Layout

Clock = Callable[[], float]  # seconds since the epoch; injected so tests can move time


@dataclass
class Config:
    layout: Layout
    gpus: str = "auto"
    slots_per_gpu: int = 1
    cpu_slots: int = 0  # 0 = one per CPU core
    grace_s: float = 10.0
    idle_timeout_s: float = 600.0
    gpu_sample_s: float = 2.0
    clock: Clock = time.time
    ray: str | None = None  # a Ray cluster's address (or "auto"): slots are actors there
    checkpoint_root: Path | None = None  # trials' logs and checkpoints, on every node


class Signalled(Protocol):
    """A segment's process, as far as stopping it goes."""

    def signal(self, sig: int) -> None: ...


@dataclass
class Running:
    """A segment in flight."""

    exp: Experiment
    trial: Trial
    attempt: int
    lease: gpus.Lease
    started: float
    last_progress: float
    proc: Signalled | None = None
    result: float | None = None
    stop_reason: str | None = None  # pause | cancel | shutdown | timeout | lost
    task: asyncio.Task[None] | None = None
    kill_at: float | None = None  # SIGKILL if it still runs then (the grace after SIGTERM)


@dataclass
class Next:
    """A segment about to start: the decision's ops are committed with the attempt's."""

    trial: Trial
    rung: int
    target: int
    ops: list[Op]
    ladder_event: asha.Event | None
    requeued: bool = False
    label: str = ""


@dataclass
class Ids:
    """The next free id of each table: the daemon, the only writer, allocates them."""

    experiments: int
    trials: int
    attempts: int

    def take(self, kind: str) -> int:
        value = int(getattr(self, kind))
        setattr(self, kind, value + 1)
        return value


@dataclass
class Slots:
    """The slot table and the latest GPU samples (memory and utilization) it leases against."""

    table: gpus.SlotTable
    samples: dict[str, gpus.GpuInfo] = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # slot name -> its Ray node (--ray)


@dataclass
class DaemonState:
    experiments: dict[int, Experiment] = field(default_factory=dict)  # live (not yet ended)
    running: dict[int, Running] = field(default_factory=dict)  # by trial id
    degraded: str | None = None  # why the store failed, while it does
    ended: asyncio.Condition = field(default_factory=asyncio.Condition)  # an experiment ended
    ids: Ids = field(default_factory=lambda: Ids(1, 1, 1))

    def running_of(self, exp: Experiment) -> int:
        return sum(1 for r in self.running.values() if r.exp is exp)
