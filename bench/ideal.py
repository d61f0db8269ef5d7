"""The schedule a zero-overhead scheduler would reach: hpd's own ladder, simulated.

Runs the same ``hpd.core.asha.Ladder`` and sampler as a real search over a spec, on ``slots``
simulated slots whose segments take exactly ``(resource - from_epoch) x epoch_s`` seconds and
cost nothing else: whenever a slot frees, the ladder decides at once. The result is what the
ladder itself allows, so a benchmark can tell the scheduler's overhead apart from the idle
time the rules impose (ASHA's last promotions run one trial through its top rungs while the
other slots have nothing left to start).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpd.core import asha
from hpd.core.experiment import Experiment
from hpd.core.spec import parse_spec


@dataclass(frozen=True)
class Schedule:
    wall_s: float  # the simulated search's makespan
    work_s: float  # the sum of every segment's length
    epochs: int  # epochs trained over all segments
    longest_chain_s: float  # one trial's segments back to back, the longest
    segments: int

    def bound_s(self, slots: int) -> float:
        """bench/scaling.py's bound: max(total work / slots, the longest chain)."""
        return max(self.work_s / slots, self.longest_chain_s)

    def efficiency(self, slots: int) -> float:
        return self.bound_s(slots) / self.wall_s if self.wall_s else 1.0


def simulate(
    spec: dict[str, Any],
    slots: int,
    epoch_s: float,
    curve: Callable[[dict[str, Any], int], float],
) -> Schedule:
    """``curve(params, epoch)``: the metric the trial would report at that epoch."""
    exp = Experiment.new(1, parse_spec(spec), "running", 0.0)
    ladder, sampler = exp.ladder, exp.sampler
    params: dict[int, dict[str, Any]] = {}
    trained: dict[int, int] = {}  # trial -> epochs its checkpoint covers
    running: list[tuple[float, int, int, int]] = []  # (end, trial, rung, epoch), a heap
    now, free, work, epochs, segments = 0.0, slots, 0.0, 0, 0
    while True:
        while free:
            d = ladder.decide()
            if not isinstance(d, (asha.StartNew, asha.Promote)):
                break
            ladder.apply(asha.event_for(d))
            if isinstance(d, asha.StartNew):
                p = sampler.params_for(d.trial)
                assert p is not None
                params[d.trial], trained[d.trial], rung = dict(p), 0, d.rung
            else:
                rung = d.to_rung
            length = (d.resource - trained[d.trial]) * epoch_s
            epochs += d.resource - trained[d.trial]
            trained[d.trial] = d.resource
            work += length
            segments += 1
            heapq.heappush(running, (now + length, d.trial, rung, d.resource))
            free -= 1
        if not running:
            break
        now, trial, rung, epoch = heapq.heappop(running)
        free += 1
        ladder.apply(asha.ResultRecorded(trial, rung, curve(params[trial], epoch)))
    chain = max(trained.values(), default=0) * epoch_s
    return Schedule(now, work, epochs, chain, segments)
