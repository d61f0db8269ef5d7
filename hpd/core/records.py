"""What the store keeps, as plain data: rows read back, and the writes ("ops") the daemon lists.

The daemon never writes SQL: it lists what changes as ops (a trial's new state, a result, an
attempt, an event) and the store applies a list in one transaction. Rows are what reads return.
Both are frozen dataclasses with no behaviour, so the core (experiments, views, ranking) can use
them without importing the store, SQLite or asyncio. Must never do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpd.core.events import Event

# trials.ckpt_path of a checkpoint kept in ``inline_checkpoints`` (a directory's path is absolute).
INLINE = "inline"


@dataclass(frozen=True, slots=True)
class ExperimentRow:
    id: int
    name: str
    spec: str
    state: str
    created_at: float
    ended_at: float | None
    parent_id: int | None


@dataclass(frozen=True, slots=True)
class TrialRow:
    id: int
    exp_id: int
    idx: int
    bracket: int
    params: str
    state: str
    rung: int
    target: int
    epoch: int
    ckpt_path: str | None
    ckpt_epoch: int
    attempts: int
    restarts: int
    gpu: str | None
    error: str | None
    subset: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    exp_id: int
    time: float
    type: str
    trial_id: int | None
    data: str


@dataclass(frozen=True, slots=True)
class AttemptRow:
    id: int
    trial_id: int
    rung: int
    slot: str
    pid: int | None
    pgid: int | None
    start_ticks: int | None
    boot_id: str | None
    started_at: float


@dataclass(frozen=True, slots=True)
class Report:
    """One epoch's metrics from one attempt (data is already JSON text)."""

    trial_id: int
    epoch: int
    attempt: int
    time: float
    data: str


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append to an experiment's log (``trial_id`` when it is about one trial)."""

    exp_id: int
    time: float
    trial_id: int | None
    event: Event


# -- writes: applied by the store, all of a list in one transaction ------------------------

TRIAL_COLUMNS = frozenset(
    {"state", "rung", "target", "epoch", "ckpt_path", "ckpt_epoch", "attempts", "restarts"}
    | {"gpu", "error", "subset"}
)
ATTEMPT_COLUMNS = frozenset({"pid", "pgid", "start_ticks", "boot_id", "ended_at", "outcome"})


@dataclass(frozen=True, slots=True)
class ExperimentIn:
    id: int
    name: str
    spec: str
    state: str
    created_at: float
    parent_id: int | None = None


@dataclass(frozen=True, slots=True)
class ExperimentState:
    id: int
    state: str
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class TrialIn:
    id: int
    exp_id: int
    idx: int
    bracket: int
    params: str
    state: str
    rung: int
    target: int
    created_at: float


@dataclass(frozen=True, slots=True)
class TrialUpdate:
    id: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TrialsOfExperiment:
    """Move every trial of an experiment in one of ``from_states`` to ``state``."""

    exp_id: int
    from_states: tuple[str, ...]
    state: str


@dataclass(frozen=True, slots=True)
class ResultIn:
    trial_id: int
    rung: int
    value: float
    epoch: int
    recorded_at: float


@dataclass(frozen=True, slots=True)
class AttemptIn:
    id: int
    trial_id: int
    rung: int
    slot: str
    started_at: float
    pid: int | None = None
    pgid: int | None = None
    start_ticks: int | None = None
    boot_id: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptUpdate:
    id: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReportsIn:
    reports: tuple[Report, ...]


@dataclass(frozen=True, slots=True)
class CheckpointRegistered:
    """The trial's latest checkpoint: a directory (``path``) or a state kept inline (``data``)."""

    trial_id: int
    epoch: int
    path: str | None = None
    data: bytes | None = None


Op = (
    ExperimentIn
    | ExperimentState
    | TrialIn
    | TrialUpdate
    | TrialsOfExperiment
    | ResultIn
    | AttemptIn
    | AttemptUpdate
    | NewEvent
    | ReportsIn
    | CheckpointRegistered
)
