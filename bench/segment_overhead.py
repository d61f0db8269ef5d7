"""The daemon's cost per segment: entrypoint (warm workers) against command trials.

Runs the acceptance search (81 ASHA trials, 1..27 epochs, eta 3) with zero-cost trials on 4
fake-GPU slots, once as entrypoint trials and once as command trials, and prints
wall x slots / segments for each, and their ratio. Goal: <= 25 ms for entrypoint trials on a
2-core machine and >= 4x below command trials.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

from bench.common import REPO, daemon, emit, machine, table

SLOTS = 4


def spec(kind: str, trials: int) -> dict[str, Any]:
    s: dict[str, Any] = {
        "name": f"overhead-{kind}",
        "metric": "loss",
        "mode": "min",
        "workdir": str(REPO),
        "searcher": {
            "name": "asha",
            "max_trials": trials,
            "min_resource": 1,
            "max_resource": 27,
            "eta": 3,
        },
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
            "momentum": {"type": "uniform", "low": 0.0, "high": 1.0},
        },
        "resources": {"gpus_per_trial": 1, "max_concurrent": SLOTS},
    }
    if kind == "entrypoint":
        s["entrypoint"] = "bench.trials:zero_cost"
    else:
        s["command"] = [sys.executable, "-m", "bench.trials"]
    return s


def run(kind: str, trials: int, slots: int, repeats: int) -> list[dict[str, Any]]:
    """``repeats`` searches on one daemon: the first pays for starting warm workers (cold)."""
    out = []
    with daemon(fake_gpus=slots, args=("--cpu-slots", "1")) as client:
        for i in range(repeats):
            s = spec(kind, trials)
            s["resources"]["max_concurrent"] = slots
            t0 = time.monotonic()
            exp = client.submit(s)
            exp.wait()
            wall = time.monotonic() - t0
            segments = sum(1 for e in exp.events() if e["type"] == "segment_started")
            out.append(
                {
                    "kind": kind,
                    "slots": slots,
                    "run": i + 1,
                    "cold": i == 0,
                    "wall_s": wall,
                    "segments": segments,
                    "ms_per_segment": 1000 * wall * slots / segments,
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=81)
    ap.add_argument("--repeats", type=int, default=3, help="searches per daemon (first = cold)")
    ap.add_argument("--slots", type=int, nargs="+", default=[SLOTS])
    args = ap.parse_args()
    runs = [
        r
        for slots in args.slots
        for kind in ("entrypoint", "command")
        for r in run(kind, args.trials, slots, args.repeats)
    ]
    print(
        table(
            ["kind", "slots", "run", "wall s", "segments", "ms/segment (wall x slots / segments)"],
            [
                [
                    r["kind"],
                    r["slots"],
                    f"{r['run']}{' (cold)' if r['cold'] else ''}",
                    r["wall_s"],
                    r["segments"],
                    r["ms_per_segment"],
                ]
                for r in runs
            ],
        )
    )
    summary = {}
    for slots in args.slots:
        for kind in ("entrypoint", "command"):
            mine = [r for r in runs if r["kind"] == kind and r["slots"] == slots]
            warm = [r["ms_per_segment"] for r in mine if not r["cold"]] or [
                mine[0]["ms_per_segment"]
            ]
            summary[f"{kind}@{slots}"] = {
                "cold": mine[0]["ms_per_segment"],
                "warm_median": statistics.median(warm),
            }
        e, c = summary[f"entrypoint@{slots}"], summary[f"command@{slots}"]
        print(
            f"{slots} slots: entrypoint {e['warm_median']:.1f} ms/segment warm, {e['cold']:.1f} cold"
            f" (goal <= 25); command {c['warm_median']:.1f}; command/entrypoint ="
            f" {c['warm_median'] / e['warm_median']:.1f}x (goal >= 4x)"
        )
    emit(
        {
            "bench": "segment_overhead",
            "machine": machine(),
            "load_avg": os.getloadavg()[0],
            "runs": runs,
            "summary": summary,
        }
    )


if __name__ == "__main__":
    main()
