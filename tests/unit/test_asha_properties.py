"""Property tests for the ASHA ladder (hpd.core.asha) against a naive, re-sorting oracle.

The oracle below recomputes every decision from scratch (full sorts, linear scans), so each
decision the ladder returns is checked against an independent reading of DESIGN §2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hpd.core.asha import (
    Decision,
    Done,
    Event,
    Ladder,
    LadderConfig,
    Promote,
    PromotionReason,
    ResultRecorded,
    StartNew,
    TrialCreated,
    TrialFailed,
    TrialPromoted,
    Wait,
    event_for,
)
from hpd.errors import LadderError

Cut = Callable[[int, int], int]

# ---------------------------------------------------------------- strategies

NON_FINITE = [math.nan, math.inf, -math.inf]
# Few distinct finite values so that ties are common; non-finite about one result in eight.
values = st.one_of(
    st.sampled_from([0.0, 1.0, 1.0, 2.0, 3.0, -1.0, 0.5, *NON_FINITE]),
    st.floats(min_value=-100, max_value=100),
)


@st.composite
def configs(draw: st.DrawFn) -> LadderConfig:
    eta = draw(st.integers(2, 4))
    min_resource = draw(st.integers(1, 3))
    return LadderConfig(
        searcher=draw(st.sampled_from(["asha", "hyperband", "sha", "random"])),
        mode=draw(st.sampled_from(["max", "min"])),
        # Mostly small, so that short runs still reach the upper rungs and the drain.
        max_trials=draw(st.one_of(st.integers(1, 12), st.integers(1, 60))),
        min_resource=min_resource,
        max_resource=min_resource * draw(st.integers(1, 30)),
        eta=eta,
        brackets=draw(st.sampled_from(["aggressive", "standard", "conservative"])),
    )


# ---------------------------------------------------------------- the oracle


def _floor(n: int, eta: int) -> int:
    return n // eta


def _ceil(n: int, eta: int) -> int:
    return math.ceil(n / eta)


def _sha(n: int, eta: int) -> int:
    return max(1, n // eta)


@dataclass
class _Trial:
    bracket: int
    rung: int = 0
    results: dict[int, float] = field(default_factory=dict)
    failed: bool = False


@dataclass
class Oracle:
    """A slow, obviously-correct model of the ladder's state and rules."""

    config: LadderConfig
    levels: tuple[tuple[int, ...], ...]
    quotas: tuple[int, ...]
    trials: list[_Trial] = field(default_factory=list)
    records: dict[tuple[int, int], list[tuple[int, int, float]]] = field(default_factory=dict)
    seq: int = 0

    # ---- state

    def state(self, trial: int) -> str:
        t = self.trials[trial]
        if t.failed:
            return "failed"
        if t.rung not in t.results:
            return "running"
        return "completed" if t.rung == len(self.levels[t.bracket]) - 1 else "paused"

    def outstanding(self) -> int:
        return sum(self.state(t) == "running" for t in range(len(self.trials)))

    def per_bracket(self, bracket: int) -> int:
        return sum(t.bracket == bracket for t in self.trials)

    def legal(self, event: Event) -> bool:
        if isinstance(event, TrialCreated):
            return (
                event.trial == len(self.trials)
                and 0 <= event.bracket < len(self.quotas)
                and self.per_bracket(event.bracket) < self.quotas[event.bracket]
            )
        if not 0 <= event.trial < len(self.trials):
            return False
        state, rung = self.state(event.trial), self.trials[event.trial].rung
        if isinstance(event, TrialPromoted):
            return state == "paused" and event.from_rung == rung and event.to_rung == rung + 1
        if isinstance(event, ResultRecorded):
            return state == "running" and event.rung == rung
        return state in ("running", "paused")

    def apply(self, event: Event) -> None:
        assert self.legal(event)
        if isinstance(event, TrialCreated):
            self.trials.append(_Trial(event.bracket))
        elif isinstance(event, TrialPromoted):
            self.trials[event.trial].rung = event.to_rung
        elif isinstance(event, ResultRecorded):
            t = self.trials[event.trial]
            t.results[event.rung] = event.value
            self.records.setdefault((t.bracket, event.rung), []).append(
                (self.seq, event.trial, event.value)
            )
            self.seq += 1
        else:
            self.trials[event.trial].failed = True

    # ---- rules

    def ranked(self, bracket: int, rung: int) -> list[tuple[int, int, float]]:
        sign = -1.0 if self.config.mode == "max" else 1.0

        def key(entry: tuple[int, int, float]) -> tuple[bool, float, int, int]:
            seq, trial, value = entry
            finite = math.isfinite(value)
            return (not finite, sign * value if finite else 0.0, seq, trial)

        return sorted(self.records.get((bracket, rung), []), key=key)

    def candidate(self, bracket: int, rung: int, cut: Cut) -> tuple[int, int, int, float] | None:
        """(trial, 1-based rank, cutoff, cutoff value) of the best promotable entry, or None."""
        ranked = self.ranked(bracket, rung)
        cutoff = cut(len(ranked), self.config.eta) if ranked else 0
        for index, (_, trial, value) in enumerate(ranked[:cutoff]):
            t = self.trials[trial]
            if math.isfinite(value) and not t.failed and t.rung == rung:
                return trial, index + 1, cutoff, ranked[cutoff - 1][2]
        return None

    def promote(self, bracket: int, rung: int, cut: Cut, drain: bool) -> Promote | None:
        found = self.candidate(bracket, rung, cut)
        if found is None:
            return None
        trial, rank, cutoff, cutoff_value = found
        population = len(self.records.get((bracket, rung), []))
        return Promote(
            trial=trial,
            bracket=bracket,
            from_rung=rung,
            to_rung=rung + 1,
            resource=self.levels[bracket][rung + 1],
            reason=PromotionReason(population, rank, cutoff, cutoff_value, drain),
        )

    def scan_order(self) -> list[tuple[int, int]]:
        return [
            (b, k) for b, levels in enumerate(self.levels) for k in range(len(levels) - 2, -1, -1)
        ]

    def start_new(self) -> StartNew:
        fractions = [
            (self.per_bracket(b) / q, b)
            for b, q in enumerate(self.quotas)
            if self.per_bracket(b) < q
        ]
        bracket = min(fractions)[1]
        return StartNew(len(self.trials), bracket, 0, self.levels[bracket][0])

    def idle(self) -> Wait | Done:
        return Wait() if self.outstanding() else Done()

    def expected(self) -> Decision:
        if self.config.searcher == "sha":
            return self.expected_sha()
        for b, k in self.scan_order():
            found = self.promote(b, k, _floor, drain=False)
            if found:
                return found
        if len(self.trials) < self.config.max_trials:
            return self.start_new()
        for b, k in self.scan_order():
            found = self.promote(b, k, _ceil, drain=True)
            if found:
                return found
        return self.idle()

    def expected_sha(self) -> Decision:
        levels = self.levels[0]
        sealed = len(self.trials) == self.config.max_trials
        for k in range(len(levels) - 1):
            entered = [t for t in self.trials if t.rung >= k]
            settled = all(k in t.results or t.failed for t in entered)
            if not (sealed and settled):
                break
            found = self.promote(0, k, _sha, drain=False)
            if found:
                return found
            sealed = True  # rung k is complete and fully promoted: rung k+1 is sealed
        if len(self.trials) < self.config.max_trials:
            return self.start_new()
        return self.idle()


def _oracle(ladder: Ladder) -> Oracle:
    return Oracle(ladder.config, ladder.brackets, ladder.quotas)


def _check_decision(ladder: Ladder, oracle: Oracle, decision: Decision) -> None:
    """The ladder's decision is the oracle's, and it obeys the stated promotion invariants."""
    if isinstance(decision, Promote):
        t = oracle.trials[decision.trial]
        # Never promoted twice from a rung, never failed, never non-finite, within the cutoff.
        assert oracle.state(decision.trial) == "paused"
        assert t.rung == decision.from_rung
        assert math.isfinite(t.results[decision.from_rung])
        assert decision.reason.rank <= decision.reason.cutoff
        n = decision.reason.population
        eta = ladder.config.eta
        if ladder.config.searcher == "sha":
            assert decision.reason.cutoff == max(1, n // eta)
        else:
            assert decision.reason.cutoff == (_ceil if decision.reason.drain else _floor)(n, eta)
            # The relaxed rule only ever applies once every trial exists.
            assert not decision.reason.drain or len(oracle.trials) == ladder.config.max_trials
    # repr, not ==: cutoff_value may be NaN, which is unequal to itself.
    assert repr(decision) == repr(oracle.expected())


# ---------------------------------------------------------------- the state machine


class LadderMachine(RuleBasedStateMachine):
    """A pool of k slots driving one ladder; every step is checked against the oracle."""

    ladder: Ladder
    oracle: Oracle
    slots: int
    events: list[Event]

    @initialize(config=configs(), slots=st.integers(1, 8))
    def setup(self, config: LadderConfig, slots: int) -> None:
        self.ladder = Ladder(config)
        self.oracle = _oracle(self.ladder)
        self.slots = slots
        self.events = []

    def _apply(self, event: Event) -> None:
        self.ladder.apply(event)
        self.oracle.apply(event)
        self.events.append(event)

    def _with_state(self, *states: str) -> list[int]:
        return [t for t in range(len(self.oracle.trials)) if self.oracle.state(t) in states]

    def _take(self) -> Decision:
        decision = self.ladder.decide()
        _check_decision(self.ladder, self.oracle, decision)
        if isinstance(decision, StartNew | Promote):
            self._apply(event_for(decision))
        return decision

    @precondition(lambda self: self.ladder.outstanding < self.slots)
    @rule()
    def take_decision(self) -> None:
        self._take()

    @rule()
    def fill_free_slots(self) -> None:
        while self.ladder.outstanding < self.slots:
            if not isinstance(self._take(), StartNew | Promote):
                break

    @precondition(lambda self: self.ladder.outstanding > 0)
    @rule(data=st.data(), value=values, fate=st.integers(0, 15))
    def finish_or_fail(self, data: st.DataObject, value: float, fate: int) -> None:
        """Mostly record a result for a running trial; now and then fail a running/paused one."""
        if fate == 0:
            self._apply(TrialFailed(data.draw(st.sampled_from(self._with_state("running")))))
        elif fate == 1 and (paused := self._with_state("paused")):
            self._apply(TrialFailed(data.draw(st.sampled_from(paused))))
        else:
            trial = data.draw(st.sampled_from(self._with_state("running")))
            self._apply(ResultRecorded(trial, self.oracle.trials[trial].rung, value))

    @rule(
        event=st.one_of(
            st.builds(TrialCreated, st.integers(-1, 62), st.integers(-1, 4)),
            st.builds(TrialPromoted, st.integers(-1, 62), st.integers(-1, 5), st.integers(-1, 6)),
            st.builds(ResultRecorded, st.integers(-1, 62), st.integers(-1, 5), values),
            st.builds(TrialFailed, st.integers(-1, 62)),
        )
    )
    def arbitrary_event(self, event: Event) -> None:
        """Illegal events raise and change nothing; legal ones are accepted (on a copy)."""
        if self.oracle.legal(event):
            copy = self._replay()
            copy.apply(event)
            return
        before = self.ladder.snapshot()
        with pytest.raises(LadderError):
            self.ladder.apply(event)
        assert self.ladder.snapshot() == before

    def _replay(self) -> Ladder:
        fresh = Ladder(self.ladder.config)
        for event in self.events:
            fresh.apply(event)
        return fresh

    @invariant()
    def replay_equals_live(self) -> None:
        assert self._replay().snapshot() == self.ladder.snapshot()

    @invariant()
    def views_match_the_oracle(self) -> None:
        assert self.ladder.created == len(self.oracle.trials)
        assert self.ladder.outstanding == self.oracle.outstanding()
        for trial, t in enumerate(self.oracle.trials):
            assert self.ladder.state_of(trial) == self.oracle.state(trial)
            assert self.ladder.rung_of(trial) == t.rung
            assert self.ladder.results(trial).keys() == t.results.keys()
        for bracket in range(len(self.ladder.brackets)):
            for stats in self.ladder.rung_stats(bracket):
                ranked = self.oracle.ranked(bracket, stats.rung)
                assert stats.results == len(ranked)
                assert stats.cutoff <= stats.results

    @invariant()
    def decide_is_pure(self) -> None:
        before = self.ladder.snapshot()
        assert self.ladder.decide() == self.ladder.decide()
        assert self.ladder.snapshot() == before


LadderMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLadderMachine = LadderMachine.TestCase


# ---------------------------------------------------------------- whole runs


def _run_to_done(
    ladder: Ladder, slots: int, data: st.DataObject, *, failures: bool
) -> tuple[list[Decision], Oracle]:
    """Fill free slots, then finish (or fail) a running trial, until Done; bounded."""
    oracle = _oracle(ladder)
    decisions: list[Decision] = []
    bound = 4 * ladder.config.max_trials * (max(map(len, ladder.brackets)) + 1) + 10
    for _ in range(bound):
        while ladder.outstanding < slots:
            decision = ladder.decide()
            _check_decision(ladder, oracle, decision)
            decisions.append(decision)
            if isinstance(decision, Done):
                return decisions, oracle
            if isinstance(decision, Wait):
                break
            assert isinstance(decision, StartNew | Promote)
            ladder.apply(event_for(decision))
            oracle.apply(event_for(decision))
        running = [t for t in range(ladder.created) if oracle.state(t) == "running"]
        assert running, "Wait with nothing outstanding"
        trial = data.draw(st.sampled_from(running))
        event: Event
        if failures and data.draw(st.integers(0, 9)) == 0:
            event = TrialFailed(trial)
        else:
            event = ResultRecorded(trial, ladder.rung_of(trial), data.draw(values))
        ladder.apply(event)
        oracle.apply(event)
    raise AssertionError("the search did not terminate")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), slots=st.integers(1, 8), failures=st.booleans(), data=st.data())
def test_search_terminates_with_done(
    config: LadderConfig, slots: int, failures: bool, data: st.DataObject
) -> None:
    """Finishing trials always leads to Done, with every trial created and none outstanding."""
    ladder = Ladder(config)
    decisions, oracle = _run_to_done(ladder, slots, data, failures=failures)
    assert isinstance(decisions[-1], Done)
    assert ladder.created == config.max_trials
    assert ladder.outstanding == 0
    failed = any(t.failed for t in oracle.trials)
    for bracket, levels in enumerate(ladder.brackets):
        members = [t for t in oracle.trials if t.bracket == bracket]
        finite_at_bottom = any(math.isfinite(t.results.get(0, math.nan)) for t in members)
        clean_above = all(
            math.isfinite(v) for t in members for rung, v in t.results.items() if rung > 0
        )
        # A failure or a non-finite value above rung 0 can legitimately strand a bracket (the
        # failed/NaN trial keeps its place in the cutoff); otherwise the drain must reach the top.
        if finite_at_bottom and clean_above and not failed:
            assert any(len(levels) - 1 in t.results for t in members), (bracket, levels)


@settings(max_examples=40, deadline=None)
@given(config=configs(), table=st.lists(values, min_size=1, max_size=12))
def test_one_slot_runs_are_deterministic(config: LadderConfig, table: list[float]) -> None:
    """Same config and value function with one slot: the same decision sequence twice."""

    def run() -> list[Decision]:
        ladder = Ladder(config)
        decisions: list[Decision] = []
        while not isinstance(decision := ladder.decide(), Done):
            assert isinstance(decision, StartNew | Promote)
            decisions.append(decision)
            ladder.apply(event_for(decision))
            rung = ladder.rung_of(decision.trial)
            value = table[(decision.trial * 31 + rung * 7) % len(table)]
            ladder.apply(ResultRecorded(decision.trial, rung, value))
        return decisions

    first = run()
    assert len(first) >= config.max_trials
    # PromotionReason may hold NaN (cutoff_value), which is != itself: compare reprs.
    assert repr(first) == repr(run())


# ---------------------------------------------------------------- revoking launches


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    config=configs(),
    steps=st.integers(0, 60),
    batch=st.integers(1, 6),
    table=st.lists(values, min_size=1, max_size=12),
)
def test_revoking_a_batch_of_launches_restores_the_ladder(
    config: LadderConfig, steps: int, batch: int, table: list[float]
) -> None:
    """The daemon applies several launches, then one commit records them; if it fails they
    are revoked in reverse order: the ladder is exactly as before, and decides the same."""
    ladder = Ladder(config)
    for _ in range(steps):  # somewhere inside a search: some trials done, some running
        decision = ladder.decide()
        if isinstance(decision, StartNew | Promote):
            ladder.apply(event_for(decision))
        running = [t for t in range(ladder.created) if ladder.state_of(t) == "running"]
        if running and (isinstance(decision, Wait | Done) or len(running) > 2):
            t = running[0]
            rung = ladder.rung_of(t)
            ladder.apply(ResultRecorded(t, rung, table[(t * 31 + rung * 7) % len(table)]))
    before, first = ladder.snapshot(), repr(ladder.decide())
    applied = []
    for _ in range(batch):
        decision = ladder.decide()
        if not isinstance(decision, StartNew | Promote):
            break
        applied.append(event_for(decision))
        ladder.apply(applied[-1])
    for event in reversed(applied):
        ladder.revoke(event)
    assert ladder.snapshot() == before
    assert repr(ladder.decide()) == first


def test_revoke_refuses_what_is_not_the_last_fresh_launch() -> None:
    ladder = Ladder(LadderConfig("asha", "min", 9, 1, 9, 3))
    made = []
    for _ in range(3):
        decision = ladder.decide()
        assert isinstance(decision, StartNew)
        made.append(event_for(decision))
        ladder.apply(made[-1])
    with pytest.raises(LadderError, match="not the last created"):
        ladder.revoke(made[0])
    ladder.apply(ResultRecorded(2, 0, 1.0))
    with pytest.raises(LadderError, match="no longer just created"):
        ladder.revoke(made[2])
    for t in (0, 1):
        ladder.apply(ResultRecorded(t, 0, float(t)))
    promote = ladder.decide()
    assert isinstance(promote, Promote)
    event = event_for(promote)
    ladder.apply(event)
    ladder.apply(ResultRecorded(promote.trial, 1, 0.5))
    with pytest.raises(LadderError, match="not running at rung 1"):
        ladder.revoke(event)
    with pytest.raises(LadderError, match="only a launch"):
        ladder.revoke(ResultRecorded(0, 0, 1.0))  # type: ignore[arg-type]
