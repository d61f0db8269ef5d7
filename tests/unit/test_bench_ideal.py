"""bench/ideal.py: the zero-overhead schedule that bench/scaling.py compares hpd against."""

from __future__ import annotations

import pytest

from bench.ideal import simulate
from bench.side_by_side import hpd_spec
from examples.synthetic.train import loss


def _curve(p: dict[str, float], epoch: int) -> float:
    return loss(p["lr"], p["momentum"], epoch)


def test_one_slot_is_never_idle() -> None:
    s = simulate(hpd_spec(27, 1, 0.05, "asha"), 1, 0.05, _curve)
    assert s.wall_s == pytest.approx(s.work_s)
    assert s.efficiency(1) == pytest.approx(1.0)
    assert s.work_s == pytest.approx(s.epochs * 0.05)
    assert s.longest_chain_s == pytest.approx(27 * 0.05)  # someone reached the top rung


@pytest.mark.parametrize("searcher", ["asha", "sha"])
@pytest.mark.parametrize("slots", [2, 4, 8, 16])
def test_no_schedule_beats_the_bound(searcher: str, slots: int) -> None:
    s = simulate(hpd_spec(81, slots, 0.05, searcher), slots, 0.05, _curve)
    assert s.wall_s >= s.bound_s(slots) - 1e-9
    assert 0 < s.efficiency(slots) <= 1.0


def test_sha_does_the_same_work_on_any_number_of_slots() -> None:
    """Synchronous rungs decide on complete populations, so timing cannot change them."""
    runs = [simulate(hpd_spec(81, n, 0.05, "sha"), n, 0.05, _curve) for n in (1, 3, 8)]
    assert len({(r.epochs, r.segments) for r in runs}) == 1
    assert runs[1].wall_s < runs[0].wall_s
