"""Reports per second through the daemon, each one durably committed before it is acknowledged.

A random search whose trials do nothing but report (every epoch one report) on N slots; every
report crosses the socket, is group-committed to SQLite (WAL, synchronous=FULL) and acknowledged.
Goal: >= 2,000 persisted reports/s on the 2-core machine (Optuna on SQLite: 40-70/s there;
Ray Tune with reuse_actors: 45-80/s; reference/anchors-perf.md).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.common import REPO, daemon, emit, machine, table


def spec(trials: int, epochs: int, slots: int) -> dict[str, Any]:
    return {
        "name": "report-throughput",
        "metric": "loss",
        "mode": "min",
        "workdir": str(REPO),
        "entrypoint": "bench.trials:report_only",
        "searcher": {
            "name": "random",
            "max_trials": trials,
            "min_resource": 1,
            "max_resource": epochs,
        },
        "space": {"x": {"type": "uniform", "low": 0.0, "high": 1.0}},
        "resources": {"gpus_per_trial": 1, "max_concurrent": slots},
    }


def run(slots: int, trials: int, epochs: int) -> dict[str, Any]:
    with daemon(fake_gpus=slots, args=("--cpu-slots", "1")) as client:
        t0 = time.monotonic()
        exp = client.submit(spec(trials, epochs, slots))
        exp.wait()
        wall = time.monotonic() - t0
        stored = sum(len(t["metrics"]) for t in exp.export()["trials"])
    assert stored == trials * epochs, f"{stored} of {trials * epochs} reports stored"
    return {"slots": slots, "reports": stored, "wall_s": wall, "reports_per_s": stored / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1000)
    args = ap.parse_args()
    runs = [run(slots, args.trials, args.epochs) for slots in (1, 4)]
    print(
        table(
            ["slots", "reports", "wall s", "reports/s"],
            [[r["slots"], r["reports"], r["wall_s"], r["reports_per_s"]] for r in runs],
        )
    )
    best = max(r["reports_per_s"] for r in runs)
    print(
        f"{best:.0f} persisted reports/s (goal >= 2,000; {best / 70:.0f}x Optuna-on-SQLite's best 70/s)"
    )
    emit(
        {
            "bench": "report_throughput",
            "machine": machine(),
            "runs": runs,
            "best_reports_per_s": best,
        }
    )


if __name__ == "__main__":
    main()
