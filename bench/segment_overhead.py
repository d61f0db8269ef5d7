"""The daemon's cost per segment: entrypoint (warm workers) against command trials.

Runs the acceptance search (81 ASHA trials, 1..27 epochs, eta 3) with zero-cost trials on 4
fake-GPU slots, once as entrypoint trials and once as command trials, and prints
wall x slots / segments for each, and their ratio. Goal: <= 25 ms for entrypoint trials on a
2-core machine and >= 4x below command trials.
"""

from __future__ import annotations

import argparse
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
        "searcher": {"name": "asha", "max_trials": trials, "min_resource": 1, "max_resource": 27, "eta": 3},
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


def run(kind: str, trials: int) -> dict[str, Any]:
    with daemon(fake_gpus=SLOTS, args=("--cpu-slots", "1")) as client:
        t0 = time.monotonic()
        exp = client.submit(spec(kind, trials))
        exp.wait(poll=0.05)
        wall = time.monotonic() - t0
        events = exp.events()
    segments = sum(1 for e in events if e["type"] == "segment_started")
    reports = sum(1 for e in events if e["type"] == "result")
    return {"kind": kind, "wall_s": wall, "segments": segments, "results": reports,
            "ms_per_segment": 1000 * wall * SLOTS / segments}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=81)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    runs = [run(kind, args.trials) for _ in range(args.repeats) for kind in ("entrypoint", "command")]
    best = {k: min(r["ms_per_segment"] for r in runs if r["kind"] == k) for k in ("entrypoint", "command")}
    print(table(["kind", "wall s", "segments", "ms/segment (wall x slots / segments)"],
                [[r["kind"], r["wall_s"], r["segments"], r["ms_per_segment"]] for r in runs]))
    ratio = best["command"] / best["entrypoint"]
    print(f"entrypoint {best['entrypoint']:.1f} ms/segment (goal <= 25), command/entrypoint = {ratio:.1f}x (goal >= 4x)")
    emit({"bench": "segment_overhead", "machine": machine(), "runs": runs,
          "entrypoint_ms": best["entrypoint"], "command_ms": best["command"], "ratio": ratio})


if __name__ == "__main__":
    main()
