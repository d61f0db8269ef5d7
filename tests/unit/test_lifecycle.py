"""The trial and experiment lifecycles: the moves allowed, and the finals that allow none."""

from __future__ import annotations

import itertools

import pytest

from hpd.core import lifecycle as lc


def test_final_states_allow_no_move_and_every_other_state_can_end() -> None:
    for s in lc.FINAL_TRIAL_STATES:
        assert lc.TRIAL_MOVES[s] == frozenset()
    for s in set(lc.TRIAL_STATES) - lc.FINAL_TRIAL_STATES:
        assert lc.TRIAL_MOVES[s] & lc.FINAL_TRIAL_STATES, s
    assert set(lc.TRIAL_MOVES) == set(lc.TRIAL_STATES)
    assert set(lc.EXPERIMENT_MOVES) == set(lc.EXPERIMENT_STATES)


def test_illegal_moves_fail_loudly() -> None:
    for a, b in itertools.product(lc.TRIAL_STATES, repeat=2):
        if b in lc.TRIAL_MOVES[a]:
            assert lc.trial_move(a, b) == b
        else:
            with pytest.raises(lc.IllegalMove, match=f"a {a} trial cannot become {b}"):
                lc.trial_move(a, b)
    with pytest.raises(lc.IllegalMove):
        lc.experiment_move("completed", "running")


def test_the_outcomes_of_a_segment() -> None:
    assert lc.after_result(top=True, finite=False) == "completed"
    assert lc.after_result(top=False, finite=True) == "paused"
    assert lc.after_result(top=False, finite=False) == "stopped"
    assert lc.after_crash(give_up=True) == "failed"
    assert lc.after_crash(give_up=False) == "queued"
    assert lc.after_interruption(cancelled=True) == "cancelled"
    assert lc.search_end(any_result=False) == "failed"
    for state in ("paused", "stopped", "completed", "queued", "failed", "cancelled"):
        assert state in lc.TRIAL_MOVES["running"]
