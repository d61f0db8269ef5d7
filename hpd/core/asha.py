"""The ASHA ladder: which trial runs next, and how far. Pure state machine.

This module owns the scheduler's state and rules (DESIGN §2): the rung levels, the bracket split,
the promotion rule with its tie and NaN policy, the finite-horizon drain, and the synchronous
(``sha``) and ``random`` baselines. State changes only through :meth:`Ladder.apply` of an
:data:`Event`; :meth:`Ladder.decide` is a pure, deterministic query. Replaying the applied events
in order into a fresh ladder gives exactly the live state, which is how the daemon recovers.

It must never do I/O, read a clock, draw random numbers, import asyncio, or know about GPUs,
processes or the database: the daemon asks, persists the event, then applies it.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from hpd.core.spec.schema import Brackets, Mode, SearcherName
from hpd.errors import LadderError

__all__ = [
    "BracketMode",
    "Decision",
    "Done",
    "Event",
    "Ladder",
    "LadderConfig",
    "Mode",
    "Promote",
    "PromotionReason",
    "ResultRecorded",
    "RungStats",
    "SearcherName",
    "StartNew",
    "TrialCreated",
    "TrialFailed",
    "TrialPromoted",
    "Wait",
    "bracket_plan",
    "event_for",
    "rung_levels",
]

BracketMode = Brackets  # the spec's name for it; defined once, in hpd.core.spec.schema
TrialState = Literal["running", "paused", "completed", "failed"]


# --------------------------------------------------------------------------- configuration


def rung_levels(min_resource: int, max_resource: int, eta: int) -> tuple[int, ...]:
    """min*eta^k for k=0.. while < max_resource, then max_resource as the top rung.

    e.g. (1,27,3)->(1,3,9,27); (1,10,3)->(1,3,9,10); (5,5,3)->(5,)
    """
    _check_resources(min_resource, max_resource, eta)
    levels: list[int] = []
    level = min_resource
    while level < max_resource:
        levels.append(level)
        level *= eta
    levels.append(max_resource)
    return tuple(levels)


def _check_resources(min_resource: int, max_resource: int, eta: int) -> None:
    if eta < 2:
        raise ValueError(f"eta must be >= 2, got {eta}")
    if not 1 <= min_resource <= max_resource:
        raise ValueError(
            f"need 1 <= min_resource <= max_resource, got {min_resource}, {max_resource}"
        )


def _floor_log(base: int, ratio_num: int, ratio_den: int) -> int:
    """Largest k with den * base^k <= num: floor(log_base(num/den)) in exact integers."""
    k = 0
    scaled = ratio_den * base
    while scaled <= ratio_num:
        k += 1
        scaled *= base
    return k


@dataclass(frozen=True, slots=True)
class LadderConfig:
    searcher: SearcherName
    mode: Mode
    max_trials: int
    min_resource: int
    max_resource: int
    eta: int
    brackets: BracketMode = "aggressive"


def bracket_plan(config: LadderConfig) -> tuple[tuple[tuple[int, ...], int], ...]:
    """Each bracket's (resource levels, trial quota), most rungs first (Determined's arithmetic)."""
    full = rung_levels(config.min_resource, config.max_resource, config.eta)
    if config.max_trials < 1:
        raise ValueError(f"max_trials must be >= 1, got {config.max_trials}")
    if config.searcher == "random":
        return (((config.max_resource,), config.max_trials),)
    # Both caps keep the top rung reachable: enough resource ratio, and enough trials that
    # eta^(R-1) of them can be whittled down to one.
    top = min(
        _floor_log(config.eta, config.max_resource, config.min_resource),
        _floor_log(config.eta, config.max_trials, 1),
    )
    count = top + 1
    if config.searcher == "sha" or config.brackets == "aggressive":
        sizes = [count]
    elif config.brackets == "standard":
        sizes = list(range(count, (count - 1) // 2, -1))
    else:
        sizes = list(range(count, 0, -1))
    quotas = _split_trials(sizes, config.eta, config.max_trials)
    # zip truncates: brackets that got no quota (the fewest-rung ones, last) are dropped.
    return tuple((full[-size:], quota) for size, quota in zip(sizes, quotas, strict=False))


def _split_trials(sizes: list[int], eta: int, max_trials: int) -> list[int]:
    """Trials per bracket, weight eta^(r-1)/r; shorter list if max_trials cannot cover them all."""
    sizes = sizes[:max_trials]  # drop the fewest-rung brackets first
    while True:
        # Exact integers (weights scaled by lcm of the rung counts) so that a share that is a
        # whole number is never floored one short by float rounding.
        scale = math.lcm(*sizes)
        weights = [eta ** (r - 1) * (scale // r) for r in sizes]
        total = sum(weights)
        quotas = [max(w * max_trials // total, 1) for w in weights]
        quotas[0] += max_trials - sum(quotas)
        if quotas[0] >= 1 or len(sizes) == 1:
            return quotas
        sizes = sizes[:-1]  # the minimum-1 rule overspent: drop another small bracket


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class StartNew:
    trial: int
    bracket: int
    rung: int
    resource: int


@dataclass(frozen=True, slots=True)
class PromotionReason:
    population: int
    rank: int
    cutoff: int
    cutoff_value: float
    drain: bool


@dataclass(frozen=True, slots=True)
class Promote:
    trial: int
    bracket: int
    from_rung: int
    to_rung: int
    resource: int
    reason: PromotionReason


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing startable now, but trials are outstanding."""


@dataclass(frozen=True, slots=True)
class Done:
    """The search is finished: nothing outstanding, nothing promotable, max_trials created."""


Decision = StartNew | Promote | Wait | Done


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class TrialCreated:
    trial: int
    bracket: int


@dataclass(frozen=True, slots=True)
class TrialPromoted:
    trial: int
    from_rung: int
    to_rung: int


@dataclass(frozen=True, slots=True)
class ResultRecorded:
    trial: int
    rung: int
    value: float


@dataclass(frozen=True, slots=True)
class TrialFailed:
    trial: int


Event = TrialCreated | TrialPromoted | ResultRecorded | TrialFailed


def event_for(decision: StartNew | Promote) -> TrialCreated | TrialPromoted:
    """The event that carries out a StartNew or Promote decision."""
    if isinstance(decision, StartNew):
        return TrialCreated(trial=decision.trial, bracket=decision.bracket)
    return TrialPromoted(
        trial=decision.trial, from_rung=decision.from_rung, to_rung=decision.to_rung
    )


@dataclass(frozen=True, slots=True)
class RungStats:
    bracket: int
    rung: int
    resource: int
    results: int
    promoted: int
    running: int
    cutoff: int
    cutoff_value: float | None
    best: float | None


# --------------------------------------------------------------------------- internal state

# Sort key of one result: (non-finite?, value signed so smaller is better, record order, trial).
# Non-finite results sort after every finite one; equal values keep record order (earlier wins).
_Key = tuple[int, float, int, int]
# How many of a rung's n results are promotable, given eta.
_Cut = Callable[[int, int], int]


class _Trial:
    __slots__ = ("bracket", "failed", "keys", "results", "rung")

    def __init__(self, bracket: int) -> None:
        self.bracket = bracket
        self.rung = 0  # promotion is the only way up, so "promoted from k" == rung > k
        self.results: dict[int, float] = {}
        self.keys: dict[int, _Key] = {}
        self.failed = False


class _Rung:
    __slots__ = ("eligible", "level", "order", "promoted", "running")

    def __init__(self, level: int) -> None:
        self.level = level
        self.order: list[_Key] = []  # every result ever recorded here, best first
        # Finite results of trials still paused here: the only promotion candidates. Kept apart
        # so decide() finds the best candidate in O(1) and its rank in `order` by bisection.
        self.eligible: list[_Key] = []
        self.promoted = 0
        self.running = 0


def _floor_cut(n: int, eta: int) -> int:
    return n // eta


def _ceil_cut(n: int, eta: int) -> int:
    return -(-n // eta)


def _sha_cut(n: int, eta: int) -> int:
    return max(1, n // eta) if n else 0


def _discard(keys: list[_Key], key: _Key) -> None:
    index = bisect_left(keys, key)
    if index < len(keys) and keys[index] == key:
        del keys[index]


def _json_float(value: float) -> float | str:
    # NaN != NaN would make equal states compare unequal, and bare NaN is not standard JSON.
    return value if math.isfinite(value) else repr(value)


# --------------------------------------------------------------------------- the ladder


class Ladder:
    """ASHA / Hyperband / SHA / random scheduling state, driven only by events."""

    def __init__(self, config: LadderConfig) -> None:
        self.config = config
        plan = bracket_plan(config)
        self._levels = tuple(levels for levels, _ in plan)
        self._quotas = tuple(quota for _, quota in plan)
        self._rungs = [[_Rung(level) for level in levels] for levels in self._levels]
        self._per_bracket = [0] * len(plan)
        self._trials: list[_Trial] = []
        self._records = 0
        self._outstanding = 0

    # ---- read-only views

    @property
    def brackets(self) -> tuple[tuple[int, ...], ...]:
        return self._levels

    @property
    def quotas(self) -> tuple[int, ...]:
        """Trials each bracket may create; sums to max_trials."""
        return self._quotas

    @property
    def created(self) -> int:
        return len(self._trials)

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def rung_of(self, trial: int) -> int:
        return self._trial(trial).rung

    def resource_of(self, trial: int, rung: int) -> int:
        levels = self._levels[self._trial(trial).bracket]
        if not 0 <= rung < len(levels):
            raise LadderError(f"trial {trial}: no rung {rung}")
        return levels[rung]

    def is_top(self, trial: int, rung: int) -> bool:
        return rung == len(self._levels[self._trial(trial).bracket]) - 1

    def state_of(self, trial: int) -> TrialState:
        return self._state(self._trial(trial))

    def results(self, trial: int) -> dict[int, float]:
        return dict(self._trial(trial).results)

    def progress(self, trial: int) -> tuple[TrialState, int]:
        """(state, number of results): changes whenever anything of the trial does, so a
        reader may cache what it derived from the trial under this key."""
        t = self._trial(trial)
        return self._state(t), len(t.results)

    def rung_stats(self, bracket: int = 0) -> list[RungStats]:
        if not 0 <= bracket < len(self._rungs):
            raise LadderError(f"no bracket {bracket}")
        rungs = self._rungs[bracket]
        cut = self._stats_cut()
        stats = []
        for index, rung in enumerate(rungs):
            n = len(rung.order)
            cutoff = 0 if index == len(rungs) - 1 else min(cut(n, self.config.eta), n)
            stats.append(
                RungStats(
                    bracket=bracket,
                    rung=index,
                    resource=rung.level,
                    results=n,
                    promoted=rung.promoted,
                    running=rung.running,
                    cutoff=cutoff,
                    cutoff_value=self._value(rung.order[cutoff - 1], index) if cutoff else None,
                    best=self._value(rung.order[0], index) if n else None,
                )
            )
        return stats

    def snapshot(self) -> dict[str, object]:
        trials = [
            {
                "bracket": t.bracket,
                "rung": t.rung,
                "state": self._state(t),
                "results": [[k, _json_float(v)] for k, v in sorted(t.results.items())],
            }
            for t in self._trials
        ]
        rungs = [
            [
                {
                    "order": [key[3] for key in rung.order],
                    "eligible": [key[3] for key in rung.eligible],
                    "promoted": rung.promoted,
                    "running": rung.running,
                }
                for rung in bracket
            ]
            for bracket in self._rungs
        ]
        return {
            "config": asdict(self.config),
            "brackets": [list(levels) for levels in self._levels],
            "quotas": list(self._quotas),
            "per_bracket": list(self._per_bracket),
            "records": self._records,
            "outstanding": self._outstanding,
            "trials": trials,
            "rungs": rungs,
        }

    # ---- decide

    def decide(self) -> Decision:
        """What a free slot should do now. Pure and deterministic."""
        if self.config.searcher == "sha":
            return self._decide_sha()
        return self._decide_async()

    def _decide_async(self) -> Decision:
        # Li et al. Alg. 2: highest rung first, top floor(n/eta); else grow rung 0.
        promote = self._scan(_floor_cut, drain=False)
        if promote is not None:
            return promote
        if self.created < self.config.max_trials:
            return self._start_new()
        # Finite horizon: no new trial can take the slot, so relax to ceil(n/eta) rather than
        # idle; this is what guarantees the search reaches max_resource.
        promote = self._scan(_ceil_cut, drain=True)
        if promote is not None:
            return promote
        return Wait() if self._outstanding else Done()

    def _decide_sha(self) -> Decision:
        # Rung k is sealed when no more trials can enter it: all max_trials created (k=0), or
        # rung k-1 complete and fully promoted. Complete = sealed and nothing running there.
        sealed = self.created == self.config.max_trials
        rungs = self._rungs[0]
        for index in range(len(rungs) - 1):
            if not (sealed and rungs[index].running == 0):
                break
            promote = self._promotable(0, index, _sha_cut, drain=False)
            if promote is not None:
                return promote
        if self.created < self.config.max_trials:
            return self._start_new()
        return Wait() if self._outstanding else Done()

    def _scan(self, cut: _Cut, *, drain: bool) -> Promote | None:
        for bracket, rungs in enumerate(self._rungs):
            for index in range(len(rungs) - 2, -1, -1):
                promote = self._promotable(bracket, index, cut, drain=drain)
                if promote is not None:
                    return promote
        return None

    def _promotable(self, bracket: int, index: int, cut: _Cut, *, drain: bool) -> Promote | None:
        """The best candidate of a rung if it lies within the cutoff, else None."""
        rung = self._rungs[bracket][index]
        if not rung.eligible:
            return None
        n = len(rung.order)
        cutoff = cut(n, self.config.eta)
        best = rung.eligible[0]
        rank = bisect_left(rung.order, best)  # keys are unique: this is its exact position
        if rank >= cutoff:
            return None
        reason = PromotionReason(
            population=n,
            rank=rank + 1,
            cutoff=cutoff,
            cutoff_value=self._value(rung.order[cutoff - 1], index),
            drain=drain,
        )
        return Promote(
            trial=best[3],
            bracket=bracket,
            from_rung=index,
            to_rung=index + 1,
            resource=self._levels[bracket][index + 1],
            reason=reason,
        )

    def _start_new(self) -> StartNew:
        # The bracket furthest behind its quota, compared as exact fractions; ties -> lowest index.
        chosen = -1
        for bracket, quota in enumerate(self._quotas):
            made = self._per_bracket[bracket]
            if made >= quota:
                continue
            if chosen < 0 or made * self._quotas[chosen] < self._per_bracket[chosen] * quota:
                chosen = bracket
        return StartNew(
            trial=self.created, bracket=chosen, rung=0, resource=self._levels[chosen][0]
        )

    def _stats_cut(self) -> _Cut:
        if self.config.searcher == "sha":
            return _sha_cut
        return _ceil_cut if self.created >= self.config.max_trials else _floor_cut

    # ---- apply

    def apply(self, event: Event) -> None:
        """Validate the event against the current state, then apply it; LadderError if illegal."""
        if isinstance(event, TrialCreated):
            self._created(event)
        elif isinstance(event, TrialPromoted):
            self._promoted(event)
        elif isinstance(event, ResultRecorded):
            self._recorded(event)
        elif isinstance(event, TrialFailed):
            self._failed(event)
        else:
            raise LadderError(f"unknown event {event!r}")

    def revoke(self, event: TrialCreated | TrialPromoted) -> None:
        """Take back the last launch applied (its start failed to commit); LadderError unless
        ``event`` was applied and nothing about its trial has happened since.

        The daemon applies several launch decisions before one commit records them all, so
        each decision sees the ones before it; if that commit fails, it revokes them in the
        reverse order, and the ladder is as if they had never been made.
        """
        if isinstance(event, TrialCreated):
            self._uncreated(event)
        elif isinstance(event, TrialPromoted):
            self._unpromoted(event)
        else:
            raise LadderError(f"only a launch can be revoked, not {event!r}")

    def _uncreated(self, event: TrialCreated) -> None:
        if event.trial != self.created - 1:
            raise LadderError(f"revoke {event}: trial {event.trial} is not the last created")
        trial = self._trials[event.trial]
        if trial.bracket != event.bracket or self._state(trial) != "running" or trial.rung:
            raise LadderError(f"revoke {event}: the trial is no longer just created")
        self._trials.pop()
        self._per_bracket[event.bracket] -= 1
        self._rungs[event.bracket][0].running -= 1
        self._outstanding -= 1

    def _unpromoted(self, event: TrialPromoted) -> None:
        trial = self._event_trial(event, event.trial)
        if self._state(trial) != "running" or trial.rung != event.to_rung:
            raise LadderError(f"revoke {event}: the trial is not running at rung {event.to_rung}")
        if event.to_rung != event.from_rung + 1:
            raise LadderError(f"revoke {event}: to_rung must be from_rung + 1")
        rungs = self._rungs[trial.bracket]
        rungs[event.to_rung].running -= 1
        rungs[event.from_rung].promoted -= 1
        insort(rungs[event.from_rung].eligible, trial.keys[event.from_rung])
        trial.rung = event.from_rung
        self._outstanding -= 1

    def _created(self, event: TrialCreated) -> None:
        if event.trial != self.created:
            raise LadderError(f"{event}: the next trial id is {self.created}")
        if not 0 <= event.bracket < len(self._quotas):
            raise LadderError(f"{event}: no bracket {event.bracket}")
        if self._per_bracket[event.bracket] >= self._quotas[event.bracket]:
            raise LadderError(f"{event}: bracket {event.bracket} is full")
        self._trials.append(_Trial(event.bracket))
        self._per_bracket[event.bracket] += 1
        self._rungs[event.bracket][0].running += 1
        self._outstanding += 1

    def _promoted(self, event: TrialPromoted) -> None:
        trial = self._event_trial(event, event.trial)
        if self._state(trial) != "paused" or trial.rung != event.from_rung:
            raise LadderError(f"{event}: trial is not paused at rung {event.from_rung}")
        if event.to_rung != event.from_rung + 1:
            raise LadderError(f"{event}: to_rung must be from_rung + 1")
        rungs = self._rungs[trial.bracket]
        _discard(rungs[event.from_rung].eligible, trial.keys[event.from_rung])
        rungs[event.from_rung].promoted += 1
        rungs[event.to_rung].running += 1
        trial.rung = event.to_rung
        self._outstanding += 1

    def _recorded(self, event: ResultRecorded) -> None:
        trial = self._event_trial(event, event.trial)
        if self._state(trial) != "running" or trial.rung != event.rung:
            raise LadderError(f"{event}: trial is not running at rung {event.rung}")
        if not isinstance(event.value, int | float):
            raise LadderError(f"{event}: value must be a number")
        value = float(event.value)
        finite = math.isfinite(value)
        signed = (-value if self.config.mode == "max" else value) if finite else 0.0
        key: _Key = (0 if finite else 1, signed, self._records, event.trial)
        self._records += 1
        rung = self._rungs[trial.bracket][event.rung]
        insort(rung.order, key)
        if finite and event.rung < len(self._rungs[trial.bracket]) - 1:
            insort(rung.eligible, key)
        rung.running -= 1
        trial.results[event.rung] = value
        trial.keys[event.rung] = key
        self._outstanding -= 1

    def _failed(self, event: TrialFailed) -> None:
        trial = self._event_trial(event, event.trial)
        state = self._state(trial)
        if state not in ("running", "paused"):
            raise LadderError(f"{event}: trial is {state}")
        rung = self._rungs[trial.bracket][trial.rung]
        if state == "running":
            rung.running -= 1
            self._outstanding -= 1
        else:
            # Its result stays in the rung's population (it still counts toward n) but it can
            # never be promoted again.
            _discard(rung.eligible, trial.keys[trial.rung])
        trial.failed = True

    # ---- helpers

    def _trial(self, trial: int) -> _Trial:
        if not 0 <= trial < len(self._trials):
            raise LadderError(f"unknown trial {trial}")
        return self._trials[trial]

    def _event_trial(self, event: Event, trial: int) -> _Trial:
        if not 0 <= trial < len(self._trials):
            raise LadderError(f"{event}: unknown trial {trial}")
        return self._trials[trial]

    def _state(self, trial: _Trial) -> TrialState:
        if trial.failed:
            return "failed"
        if trial.rung not in trial.results:
            return "running"
        if trial.rung == len(self._levels[trial.bracket]) - 1:
            return "completed"
        return "paused"

    def _value(self, key: _Key, rung: int) -> float:
        return self._trials[key[3]].results[rung]
