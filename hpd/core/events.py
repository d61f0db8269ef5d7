"""The event log's vocabulary: one frozen dataclass per event type, and its JSON form.

The daemon writes an event with every change it makes; recovery replays the ladder's events
(``LADDER``) to rebuild each search, and ``hpd events`` shows them all. Writer and reader agree
here, not by convention: ``to_data`` is what the store keeps, ``decode`` reads it back, and
``decode(e.TYPE, to_data(e)) == e`` for every event (a property test checks it). Metric values
are written in their wire form (``hpd.core.numbers``), so NaN survives the JSON.

Fields that older hpd versions did not write have defaults, so an old log still decodes. Pure:
no I/O, no clock (the time of an event is the writer's, kept beside it in the row).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hpd.core import numbers


@dataclass(frozen=True, slots=True)
class ExperimentSubmitted:
    TYPE: ClassVar[str] = "experiment_submitted"
    name: str
    max_trials: int


@dataclass(frozen=True, slots=True)
class RetrainPlanned:
    """A retraining's picks: ``{trial, rung, value, params}`` of each parent trial chosen."""

    TYPE: ClassVar[str] = "retrain_planned"
    parent: int
    picks: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ExperimentPaused:
    TYPE: ClassVar[str] = "experiment_paused"
    reason: str | None = None  # set when the daemon paused it (a missing package)


@dataclass(frozen=True, slots=True)
class ExperimentResumed:
    TYPE: ClassVar[str] = "experiment_running"


@dataclass(frozen=True, slots=True)
class ExperimentCancelled:
    TYPE: ClassVar[str] = "experiment_cancelled"


@dataclass(frozen=True, slots=True)
class ExperimentCompleted:
    TYPE: ClassVar[str] = "experiment_completed"


@dataclass(frozen=True, slots=True)
class ExperimentFailed:
    TYPE: ClassVar[str] = "experiment_failed"


@dataclass(frozen=True, slots=True)
class TrialCreated:
    TYPE: ClassVar[str] = "trial_created"
    index: int
    bracket: int
    params: dict[str, Any]
    resource: int = 0
    proposal: dict[str, Any] | None = None  # which sampler proposed it, and from what


@dataclass(frozen=True, slots=True)
class Promoted:
    TYPE: ClassVar[str] = "promoted"
    rung: int
    to_rung: int
    resource: int = 0
    reason: dict[str, Any] = field(default_factory=dict)  # the ladder's PromotionReason


@dataclass(frozen=True, slots=True)
class SegmentStarted:
    TYPE: ClassVar[str] = "segment_started"
    attempt: int
    rung: int
    resource: int
    from_epoch: int = 0
    slot: str = ""
    gpus: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Result:
    """A rung's result (the value may be NaN or infinite)."""

    TYPE: ClassVar[str] = "result"
    rung: int
    value: float
    epoch: int = 0
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class TrialCompleted:
    TYPE: ClassVar[str] = "trial_completed"
    rung: int
    value: float


@dataclass(frozen=True, slots=True)
class SegmentInterrupted:
    TYPE: ClassVar[str] = "segment_interrupted"
    attempt: int
    reason: str | None = None  # pause | cancel | shutdown | lost
    detail: str | None = None  # for lost: which node left, and what Ray said


@dataclass(frozen=True, slots=True)
class SegmentFailed:
    TYPE: ClassVar[str] = "segment_failed"
    attempt: int
    reason: str
    restarts: int
    retry_in_s: float | None = None  # None: it gave up (a trial_failed follows)


@dataclass(frozen=True, slots=True)
class TrialFailed:
    TYPE: ClassVar[str] = "trial_failed"
    reason: str = ""
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class SegmentRequeued:
    TYPE: ClassVar[str] = "segment_requeued"
    reason: str


Event = (
    ExperimentSubmitted
    | RetrainPlanned
    | ExperimentPaused
    | ExperimentResumed
    | ExperimentCancelled
    | ExperimentCompleted
    | ExperimentFailed
    | TrialCreated
    | Promoted
    | SegmentStarted
    | Result
    | TrialCompleted
    | SegmentInterrupted
    | SegmentFailed
    | TrialFailed
    | SegmentRequeued
)

TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        ExperimentSubmitted,
        RetrainPlanned,
        ExperimentPaused,
        ExperimentResumed,
        ExperimentCancelled,
        ExperimentCompleted,
        ExperimentFailed,
        TrialCreated,
        Promoted,
        SegmentStarted,
        Result,
        TrialCompleted,
        SegmentInterrupted,
        SegmentFailed,
        TrialFailed,
        SegmentRequeued,
    )
}

# The events that the ladder replays, in the order of the log, to rebuild its state.
LADDER = (TrialCreated.TYPE, Promoted.TYPE, Result.TYPE, TrialFailed.TYPE)

# An experiment's state after each of these (the event a state change writes).
EXPERIMENT_STATE_EVENTS: dict[str, Callable[[], Event]] = {
    "paused": ExperimentPaused,
    "running": ExperimentResumed,
    "cancelled": ExperimentCancelled,
    "completed": ExperimentCompleted,
    "failed": ExperimentFailed,
}

_METRICS = ("value",)  # fields written in the wire form of numbers


def to_data(ev: Event) -> dict[str, Any]:
    """The event's fields as JSON-ready data (NaN and inf as strings)."""
    out = {f.name: getattr(ev, f.name) for f in dataclasses.fields(ev)}
    for name in _METRICS:
        if name in out:
            out[name] = numbers.encode(out[name])
    return out


def to_json(ev: Event) -> str:
    return json.dumps(to_data(ev), allow_nan=False)


def decode(type_: str, data: dict[str, Any]) -> Event:
    """The event that ``to_data`` wrote (unknown keys of a newer hpd are ignored)."""
    cls = TYPES.get(type_)
    if cls is None:
        raise ValueError(f"unknown event type {type_!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    args = {k: v for k, v in data.items() if k in names}
    for name in _METRICS:
        if name in args:
            args[name] = numbers.decode(args[name])
    return cls(**args)


def state_event(state: str) -> Event:
    """The event an experiment's move to ``state`` writes."""
    return EXPERIMENT_STATE_EVENTS[state]()
