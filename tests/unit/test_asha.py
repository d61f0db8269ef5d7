"""Example tests for the ASHA ladder (hpd.core.asha): one behaviour per test."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from hpd.core.asha import (
    BracketMode,
    Decision,
    Done,
    Event,
    Ladder,
    LadderConfig,
    Promote,
    ResultRecorded,
    SearcherName,
    StartNew,
    TrialCreated,
    TrialFailed,
    TrialPromoted,
    Wait,
    event_for,
    rung_levels,
)
from hpd.errors import LadderError

ValueFn = Callable[[int, int], float]


def _config(
    searcher: SearcherName = "asha",
    *,
    max_trials: int = 9,
    min_resource: int = 1,
    max_resource: int = 9,
    eta: int = 3,
    brackets: BracketMode = "aggressive",
) -> LadderConfig:
    return LadderConfig(
        searcher=searcher,
        mode="max",
        max_trials=max_trials,
        min_resource=min_resource,
        max_resource=max_resource,
        eta=eta,
        brackets=brackets,
    )


def _take(ladder: Ladder) -> StartNew | Promote:
    """Decide for one free slot and apply the decision's event; the decision must be work."""
    decision = ladder.decide()
    assert isinstance(decision, StartNew | Promote), decision
    ladder.apply(event_for(decision))
    return decision


def _finish(ladder: Ladder, trial: int, value: float) -> None:
    ladder.apply(ResultRecorded(trial=trial, rung=ladder.rung_of(trial), value=value))


def _run_sequential(ladder: Ladder, value: ValueFn) -> list[Decision]:
    """One slot: take a decision, run it to its result at once, until Done."""
    decisions: list[Decision] = []
    while True:
        decision = ladder.decide()
        decisions.append(decision)
        if isinstance(decision, Done):
            return decisions
        assert isinstance(decision, StartNew | Promote), decision
        ladder.apply(event_for(decision))
        _finish(ladder, decision.trial, value(decision.trial, ladder.rung_of(decision.trial)))


def _completed(ladder: Ladder) -> list[int]:
    return [t for t in range(ladder.created) if ladder.state_of(t) == "completed"]


# ---------------------------------------------------------------- rung levels and brackets


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((1, 27, 3), (1, 3, 9, 27)),
        ((1, 10, 3), (1, 3, 9, 10)),
        ((5, 5, 3), (5,)),
        ((2, 16, 2), (2, 4, 8, 16)),
        ((3, 4, 4), (3, 4)),
    ],
)
def test_rung_levels(args: tuple[int, int, int], expected: tuple[int, ...]) -> None:
    """Levels are min*eta^k below max, with max as the top rung."""
    assert rung_levels(*args) == expected


def test_rung_levels_rejects_bad_arguments() -> None:
    """eta < 2 or min > max is a ValueError."""
    with pytest.raises(ValueError, match="eta"):
        rung_levels(1, 9, 1)
    with pytest.raises(ValueError, match="min_resource"):
        rung_levels(10, 9, 3)


def test_aggressive_is_one_bracket_with_all_trials() -> None:
    """Determined example (256 trials, max 100, divisor 4): one 4-rung bracket of 256."""
    ladder = Ladder(_config(max_trials=256, max_resource=100, eta=4))
    assert [len(b) for b in ladder.brackets] == [4]
    assert ladder.quotas == (256,)


def test_standard_brackets_match_determined() -> None:
    """Determined example: standard -> 4,3,2 rungs with 177,58,21 trials."""
    ladder = Ladder(_config(max_trials=256, max_resource=100, eta=4, brackets="standard"))
    assert [len(b) for b in ladder.brackets] == [4, 3, 2]
    assert ladder.quotas == (177, 58, 21)


def test_conservative_brackets_match_determined() -> None:
    """Determined example: conservative -> 4,3,2,1 rungs with 169,56,21,10 trials."""
    ladder = Ladder(_config(max_trials=256, max_resource=100, eta=4, brackets="conservative"))
    assert [len(b) for b in ladder.brackets] == [4, 3, 2, 1]
    assert ladder.quotas == (169, 56, 21, 10)


def test_brackets_use_the_top_levels() -> None:
    """A bracket with r rungs uses the top r levels, so every bracket ends at max_resource."""
    ladder = Ladder(_config(max_trials=256, max_resource=100, eta=4, brackets="conservative"))
    assert ladder.brackets == ((4, 16, 64, 100), (16, 64, 100), (64, 100), (100,))


def test_max_trials_caps_the_rung_count() -> None:
    """Rungs are capped at floor(log_eta(max_trials)) + 1 so the top rung is reachable."""
    ladder = Ladder(_config(max_trials=8, max_resource=81))
    assert ladder.brackets == ((27, 81),)


def test_random_is_one_rung_at_max_resource() -> None:
    """random trains every trial straight to max_resource."""
    ladder = Ladder(_config("random", max_resource=27))
    assert ladder.brackets == ((27,),)


def test_start_new_balances_brackets_by_quota_fraction() -> None:
    """StartNew picks the bracket furthest behind its quota, ties to the lower index."""
    ladder = Ladder(_config(max_trials=256, max_resource=100, eta=4, brackets="standard"))
    first = [_take(ladder).bracket for _ in range(3)]
    assert first == [0, 1, 2]


# ---------------------------------------------------------------- promotion rule


def test_fewer_than_eta_results_start_new() -> None:
    """With fewer than eta results at rung 0, nothing is promotable: start a new trial."""
    ladder = Ladder(_config())
    for trial in range(2):
        _take(ladder)
        _finish(ladder, trial, 10.0 - trial)
    assert ladder.decide() == StartNew(trial=2, bracket=0, rung=0, resource=1)


def test_eta_results_promote_the_best() -> None:
    """With eta results, the best one is promoted to the next rung's resource."""
    ladder = Ladder(_config())
    for trial, value in enumerate([1.0, 3.0, 2.0]):
        _take(ladder)
        _finish(ladder, trial, value)
    decision = ladder.decide()
    assert isinstance(decision, Promote)
    assert (decision.trial, decision.from_rung, decision.to_rung, decision.resource) == (1, 0, 1, 3)
    assert decision.reason.population == 3
    assert decision.reason.rank == 1
    assert decision.reason.cutoff == 1
    assert decision.reason.cutoff_value == 3.0
    assert not decision.reason.drain


def test_mode_min_prefers_lower_values() -> None:
    """mode 'min' promotes the lowest value."""
    ladder = Ladder(LadderConfig("asha", "min", 9, 1, 9, 3))
    for trial, value in enumerate([1.0, 3.0, 2.0]):
        _take(ladder)
        _finish(ladder, trial, value)
    decision = ladder.decide()
    assert isinstance(decision, Promote)
    assert decision.trial == 0


def test_ties_go_to_the_earlier_recorded_result() -> None:
    """Equal values: the result recorded first wins, whatever the trial ids."""
    ladder = Ladder(_config())
    for _ in range(3):
        _take(ladder)
    for trial in (2, 0, 1):  # record out of id order
        _finish(ladder, trial, 5.0)
    decision = ladder.decide()
    assert isinstance(decision, Promote)
    assert decision.trial == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_results_are_never_promoted(bad: float) -> None:
    """NaN and ±inf rank below every finite value and are never promoted, even in the cutoff."""
    ladder = Ladder(_config(max_trials=12))
    for trial in range(3):
        _take(ladder)
        _finish(ladder, trial, bad)
    assert isinstance(ladder.decide(), StartNew)


def test_non_finite_ranks_below_finite() -> None:
    """A finite result outranks +inf even in mode max."""
    ladder = Ladder(_config())
    for trial, value in enumerate([math.inf, -100.0, math.nan]):
        _take(ladder)
        _finish(ladder, trial, value)
    decision = ladder.decide()
    assert isinstance(decision, Promote)
    assert decision.trial == 1


def test_higher_rung_promotes_first() -> None:
    """When two rungs have candidates, the higher rung's is promoted first."""
    ladder = Ladder(_config(max_trials=16, max_resource=4, eta=2))
    assert ladder.brackets == ((1, 2, 4),)
    for trial, value in enumerate([10.0, 9.0, 8.0, 7.0, 1.0, 0.0]):
        ladder.apply(TrialCreated(trial=trial, bracket=0))
        _finish(ladder, trial, value)
    for trial, value in [(0, 5.0), (1, 6.0)]:
        ladder.apply(TrialPromoted(trial=trial, from_rung=0, to_rung=1))
        _finish(ladder, trial, value)
    # Rung 0: n=6, cutoff 3, trial 2 promotable. Rung 1: n=2, cutoff 1, trial 1 promotable.
    first = _take(ladder)
    assert isinstance(first, Promote)
    assert (first.trial, first.from_rung, first.to_rung) == (1, 1, 2)
    second = _take(ladder)
    assert isinstance(second, Promote)
    assert (second.trial, second.from_rung, second.reason.rank) == (2, 0, 3)


def test_failed_trials_count_but_are_not_promoted() -> None:
    """A failed trial's result stays in the population but it is never promoted."""
    ladder = Ladder(_config(max_trials=12))
    for trial, value in enumerate([9.0, 1.0, 2.0]):
        _take(ladder)
        _finish(ladder, trial, value)
    ladder.apply(TrialFailed(trial=0))
    assert isinstance(ladder.decide(), StartNew)
    assert ladder.rung_stats()[0].results == 3


# ---------------------------------------------------------------- drain and termination


def test_drain_applies_as_soon_as_max_trials_exist() -> None:
    """At max_trials the ceil(n/eta) rule promotes at once, even with trials outstanding."""
    ladder = Ladder(_config(max_trials=3))  # rungs capped to (3, 9)
    assert ladder.brackets == ((3, 9),)
    for _ in range(2):
        _take(ladder)
    _finish(ladder, 0, 1.0)
    assert isinstance(_take(ladder), StartNew)  # trial 2: the last one
    decision = ladder.decide()
    assert isinstance(decision, Promote)
    assert decision.trial == 0
    assert decision.reason.drain
    assert decision.reason.cutoff == 1
    assert ladder.outstanding == 2


def test_wait_when_nothing_startable_but_trials_outstanding() -> None:
    """All trials created, nothing promotable, some running: Wait."""
    ladder = Ladder(_config(max_trials=2, max_resource=1))
    _take(ladder)
    _take(ladder)
    assert ladder.decide() == Wait()


def test_nine_trial_run_ends_with_one_trial_at_the_top() -> None:
    """9 trials, eta 3, levels 1..9, one slot: Done with exactly one trial at max_resource."""
    ladder = Ladder(_config())
    decisions = _run_sequential(ladder, lambda trial, rung: -float(trial))
    assert isinstance(decisions[-1], Done)
    assert ladder.created == 9
    assert _completed(ladder) == [0]
    assert ladder.resource_of(0, ladder.rung_of(0)) == 9


def test_drain_reaches_the_top_when_rung_counts_never_reach_eta() -> None:
    """4 trials on levels (3, 9): the drain promotes beyond what floor(n/eta) allows."""
    ladder = Ladder(_config(max_trials=4))
    decisions = _run_sequential(ladder, lambda trial, rung: -float(trial))
    drained = [d for d in decisions if isinstance(d, Promote) and d.reason.drain]
    assert [d.trial for d in drained] == [1]
    assert _completed(ladder) == [0, 1]


def test_81_trial_run_finishes_with_trials_at_the_top() -> None:
    """81 trials on (1, 27, 3), one slot: Done, every trial created, some at the top."""
    ladder = Ladder(_config(max_trials=81, max_resource=27))
    assert ladder.brackets == ((1, 3, 9, 27),)
    decisions = _run_sequential(ladder, lambda trial, rung: float((trial * 7919) % 101 + rung))
    assert isinstance(decisions[-1], Done)
    assert ladder.created == 81
    assert ladder.outstanding == 0
    assert len(_completed(ladder)) >= 1


def test_hyperband_runs_every_bracket_to_done() -> None:
    """hyperband (conservative) fills every bracket's quota and ends Done."""
    config = _config("hyperband", max_trials=40, max_resource=27, brackets="conservative")
    ladder = Ladder(config)
    decisions = _run_sequential(ladder, lambda trial, rung: float(trial % 7))
    assert isinstance(decisions[-1], Done)
    started = [d.bracket for d in decisions if isinstance(d, StartNew)]
    assert [started.count(b) for b in range(len(ladder.brackets))] == list(ladder.quotas)
    assert {ladder.rung_of(t) for t in _completed(ladder)} >= {0}  # the 1-rung bracket completes


# ---------------------------------------------------------------- sha and random


def test_sha_waits_until_the_rung_is_complete() -> None:
    """sha promotes nothing from rung 0 while any of its trials is still running."""
    ladder = Ladder(_config("sha"))
    for _ in range(9):
        _take(ladder)
    for trial in range(8):
        _finish(ladder, trial, float(trial))
    assert ladder.decide() == Wait()
    _finish(ladder, 8, 8.0)
    decision = ladder.decide()
    assert isinstance(decision, Promote)
    assert decision.trial == 8
    assert decision.reason.cutoff == 3


def test_sha_promotes_the_whole_cutoff_before_the_next_rung() -> None:
    """sha promotes the top floor(n/eta) of rung 0 before anything leaves rung 1."""
    ladder = Ladder(_config("sha"))
    decisions = _run_sequential(ladder, lambda trial, rung: float(trial))
    promotions = [(d.trial, d.from_rung) for d in decisions if isinstance(d, Promote)]
    assert promotions == [(8, 0), (7, 0), (6, 0), (8, 1)]
    assert _completed(ladder) == [8]


def test_sha_cutoff_is_at_least_one() -> None:
    """sha with fewer than eta results at a complete rung still promotes the best one."""
    ladder = Ladder(_config("sha", max_trials=3))
    decisions = _run_sequential(ladder, lambda trial, rung: float(trial))
    promotions = [d for d in decisions if isinstance(d, Promote)]
    assert [(p.trial, p.reason.cutoff) for p in promotions] == [(2, 1)]


def test_random_runs_every_trial_to_max_resource() -> None:
    """random starts max_trials trials at max_resource; each completes on its first result."""
    ladder = Ladder(_config("random", max_trials=5, max_resource=27))
    decisions = _run_sequential(ladder, lambda trial, rung: float(trial))
    assert [type(d) for d in decisions] == [StartNew] * 5 + [Done]
    assert all(isinstance(d, StartNew) and d.resource == 27 for d in decisions[:5])
    assert _completed(ladder) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- events and validation


def _paused_ladder() -> Ladder:
    """Trials 0-2 with results at rung 0; trial 0 promoted and running at rung 1; 3 running."""
    ladder = Ladder(_config(max_trials=9))
    for trial, value in enumerate([3.0, 1.0, 2.0]):
        _take(ladder)
        _finish(ladder, trial, value)
    _take(ladder)  # promote 0
    _take(ladder)  # start 3
    return ladder


@pytest.mark.parametrize(
    "event",
    [
        TrialCreated(trial=7, bracket=0),  # wrong id
        TrialCreated(trial=4, bracket=1),  # unknown bracket
        TrialPromoted(trial=1, from_rung=1, to_rung=2),  # not paused at rung 1
        TrialPromoted(trial=1, from_rung=0, to_rung=2),  # skips a rung
        TrialPromoted(trial=0, from_rung=0, to_rung=1),  # already promoted
        TrialPromoted(trial=3, from_rung=0, to_rung=1),  # still running
        TrialPromoted(trial=99, from_rung=0, to_rung=1),  # unknown
        ResultRecorded(trial=1, rung=0, value=1.0),  # duplicate result
        ResultRecorded(trial=0, rung=0, value=1.0),  # not running at rung 0
        ResultRecorded(trial=3, rung=1, value=1.0),  # wrong rung
        ResultRecorded(trial=99, rung=0, value=1.0),  # unknown
        TrialFailed(trial=99),  # unknown
    ],
)
def test_illegal_events_raise_and_leave_state_unchanged(event: Event) -> None:
    """An illegal event raises LadderError and the snapshot is unchanged."""
    ladder = _paused_ladder()
    before = ladder.snapshot()
    with pytest.raises(LadderError):
        ladder.apply(event)
    assert ladder.snapshot() == before


def test_full_bracket_rejects_creation() -> None:
    """TrialCreated beyond the bracket's quota is illegal."""
    ladder = Ladder(_config(max_trials=1, max_resource=1))
    _take(ladder)
    before = ladder.snapshot()
    with pytest.raises(LadderError, match="full"):
        ladder.apply(TrialCreated(trial=1, bracket=0))
    assert ladder.snapshot() == before


def test_completed_and_failed_trials_cannot_fail() -> None:
    """TrialFailed is illegal for a completed or an already-failed trial."""
    ladder = Ladder(_config("random", max_trials=2))
    _take(ladder)
    _take(ladder)
    _finish(ladder, 0, 1.0)
    ladder.apply(TrialFailed(trial=1))
    before = ladder.snapshot()
    for trial in (0, 1):
        with pytest.raises(LadderError):
            ladder.apply(TrialFailed(trial=trial))
    assert ladder.snapshot() == before


def test_promotion_from_the_top_is_illegal() -> None:
    """A completed trial cannot be promoted."""
    ladder = Ladder(_config("random", max_trials=1))
    _take(ladder)
    _finish(ladder, 0, 1.0)
    with pytest.raises(LadderError):
        ladder.apply(TrialPromoted(trial=0, from_rung=0, to_rung=1))


def test_states_follow_the_trial_lifecycle() -> None:
    """running -> paused -> running (promoted) -> failed."""
    ladder = _paused_ladder()
    assert [ladder.state_of(t) for t in range(4)] == ["running", "paused", "paused", "running"]
    ladder.apply(TrialFailed(trial=0))
    assert ladder.state_of(0) == "failed"
    assert ladder.outstanding == 1
    assert ladder.results(0) == {0: 3.0}


def test_replay_gives_the_live_snapshot() -> None:
    """Applying the same events to a fresh ladder reproduces the snapshot, NaN included."""
    live = Ladder(_config(max_trials=12))
    events: list[Event] = []
    for step in range(20):
        decision = live.decide()
        if not isinstance(decision, StartNew | Promote):
            break
        event: Event = event_for(decision)
        live.apply(event)
        events.append(event)
        value = math.nan if step % 5 == 0 else float(step % 4)
        event = ResultRecorded(decision.trial, live.rung_of(decision.trial), value)
        live.apply(event)
        events.append(event)
    replay = Ladder(live.config)
    for event in events:
        replay.apply(
            ResultRecorded(event.trial, event.rung, float(str(event.value)))
            if isinstance(event, ResultRecorded)
            else event
        )
    assert replay.snapshot() == live.snapshot()


def test_rung_stats_report_population_and_cutoff() -> None:
    """rung_stats gives per-rung counts, the cutoff and its value, and the best value."""
    ladder = _paused_ladder()
    stats = ladder.rung_stats()
    assert [(s.rung, s.resource, s.results, s.promoted, s.running) for s in stats] == [
        (0, 1, 3, 1, 1),
        (1, 3, 0, 0, 1),
        (2, 9, 0, 0, 0),
    ]
    assert (stats[0].cutoff, stats[0].cutoff_value, stats[0].best) == (1, 3.0, 3.0)
    assert (stats[1].cutoff, stats[1].cutoff_value, stats[1].best) == (0, None, None)


def test_decide_does_not_mutate() -> None:
    """decide() twice in a row returns the same decision and leaves the snapshot alone."""
    ladder = _paused_ladder()
    before = ladder.snapshot()
    assert ladder.decide() == ladder.decide()
    assert ladder.snapshot() == before
