"""What one tpe proposal costs at 100, 1,000 and 10,000 results, and how much of it the
daemon's event loop pays (building the observations; the model itself runs in a thread).

The history is a real ladder's: an ASHA search (eta 3, 1..27 epochs) driven to N trials with
random configurations on ``bench.quality``'s Hartmann-6 problem, four trials still in flight.
Goals (issue 13): at most 20 ms at 1,000 results and 100 ms at 10,000.
Run: ``python -m bench.proposal_cost [--sizes 100 1000 10000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import emit, machine, table
from bench.quality import PROBLEMS, _spec, next_segment
from hpd.core import asha
from hpd.core.experiment import Experiment


def history(n: int) -> Experiment:
    """An experiment whose ladder holds n trials: n - 4 with results, 4 running."""
    exp = Experiment.new(1, _spec("tpe", 0, n + 1), "running", 0.0)
    problem = PROBLEMS[1]
    while exp.ladder.created < n:
        step = next_segment(exp, lambda e, i: e.random_proposal(i).params)
        if step is None:
            break
        idx, rung, resource = step
        if exp.ladder.created > n - 4 and exp.ladder.rung_of(idx) == 0:
            continue  # the last 4 new trials stay in flight: no result yet
        value = problem.value(exp.trials[idx].params, resource, 0)
        exp.ladder.apply(asha.ResultRecorded(idx, rung, value))
    return exp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows, out = [], {}
    for n in args.sizes:
        exp = history(n)
        model = exp.model()
        loop_ms, model_ms = [], []
        for r in range(args.repeats + 1):
            t0 = time.perf_counter()
            obs = exp.observations()
            t1 = time.perf_counter()
            model.propose(len(obs), obs)
            t2 = time.perf_counter()
            if r:  # the first call fills the model's cache of Optuna trials
                loop_ms.append((t1 - t0) * 1e3)
                model_ms.append((t2 - t1) * 1e3)
        goal = 20.0 if n <= 1000 else 100.0
        total = statistics.median(loop_ms) + statistics.median(model_ms)
        rows.append([n, statistics.median(loop_ms), statistics.median(model_ms), total, goal])
        out[str(n)] = {
            "loop_ms": statistics.median(loop_ms),
            "model_ms": statistics.median(model_ms),
        }
    print(table(["results", "on the loop ms", "model (thread) ms", "total ms", "goal ms"], rows))
    emit({"bench": "proposal_cost", "sizes": out, "machine": machine()})


if __name__ == "__main__":
    main()
