"""What asynchrony buys: ASHA against synchronous SHA when configurations cost different amounts.

Each configuration's epochs sleep 20, 50 or 200 ms (a choice parameter, like batch or model size
in a real search). Synchronous SHA waits for a rung's slowest trial before promoting; ASHA
promotes whenever a slot frees. Prints wall times, SHA wall / ASHA wall (the seeds' ASH vs SH
table: 1.27x, 1.84x, 3.19x at 4, 8, 16 threads), the time until a first configuration is trained
to max_resource, the time to target (until a configuration in the top 5% of those the search
sampled, by its true loss at max_resource, has been trained to max_resource: the fairer measure
for ASHA, which is built to find good configurations early rather than to finish a finite
search first), and each run's efficiency against the bound max(total sleep / slots, longest
chain of one trial). Both searchers sample the same configurations (trial i's depend only on
the seed and i). A final JSON line.

    .venv/bin/python -m bench.asynchrony --trials 128 --slots 4 8
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from bench.common import daemon, emit, machine, table
from bench.side_by_side import MAX_EPOCHS, hpd_spec
from examples.synthetic.train import loss

COSTS = [0.02, 0.05, 0.2]
TARGET_QUANTILE = 0.05


def time_to_target(events: list[dict[str, Any]], trials: list[dict[str, Any]]) -> float | None:
    """Seconds from the first event until a top-5% configuration (by its true loss at
    max_resource) has a result at max_resource; None if none ever does."""
    final = {
        t["id"]: loss(float(t["params"]["lr"]), float(t["params"]["momentum"]), MAX_EPOCHS)
        for t in trials
    }
    ranked = sorted(final.values())
    target = ranked[int(TARGET_QUANTILE * (len(ranked) - 1))]
    start = events[0]["time"]
    for e in events:
        if e["type"] == "result" and int(e["epoch"]) == MAX_EPOCHS and final[e["trial"]] <= target:
            return float(e["time"] - start)
    return None


def run(searcher: str, trials: int, slots: int) -> dict[str, Any]:
    spec = hpd_spec(trials, slots, 0.0, searcher)
    spec["space"]["sleep"] = {"type": "choice", "values": COSTS}
    with daemon(fake_gpus=slots, args=("--cpu-slots", "1")) as client:
        t0 = time.monotonic()
        exp = client.submit(spec)
        exp.wait()
        wall = time.monotonic() - t0
        events = exp.events()
        trials = exp.trials()
        sleep_of = {t["id"]: float(t["params"]["sleep"]) for t in trials}
    work: dict[int, float] = {}
    for e in events:
        if e["type"] == "segment_started":
            cost = (int(e["resource"]) - int(e["from_epoch"])) * sleep_of[e["trial"]]
            work[e["trial"]] = work.get(e["trial"], 0.0) + cost
    bound = max(sum(work.values()) / slots, max(work.values()))
    # ASHA's promise (Li et al.): a configuration trained to max_resource early, not only at the end.
    start = events[0]["time"]
    first_full = min(e["time"] for e in events if e["type"] == "trial_completed") - start
    return {
        "searcher": searcher,
        "slots": slots,
        "wall_s": wall,
        "work_s": sum(work.values()),
        "bound_s": bound,
        "efficiency": bound / wall,
        "first_full_s": first_full,
        "to_target_s": time_to_target(events, trials),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=128)
    ap.add_argument("--slots", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args()
    runs = []
    for slots in args.slots:
        for searcher in ("asha", "sha"):
            runs.append(run(searcher, args.trials, slots))
            print(
                f"  {searcher} {slots} slots: {runs[-1]['wall_s']:.2f} s, efficiency {runs[-1]['efficiency']:.2f}",
                flush=True,
            )
    rows = []
    for slots in args.slots:
        a = next(r for r in runs if r["slots"] == slots and r["searcher"] == "asha")
        s = next(r for r in runs if r["slots"] == slots and r["searcher"] == "sha")
        rows.append(
            [
                slots,
                a["wall_s"],
                a["efficiency"],
                a["first_full_s"],
                s["wall_s"],
                s["efficiency"],
                s["first_full_s"],
                s["wall_s"] / a["wall_s"],
                s["first_full_s"] / a["first_full_s"],
                a["to_target_s"],
                s["to_target_s"],
                _ratio(s["to_target_s"], a["to_target_s"]),
            ]
        )
    heads = [
        "slots",
        "ASHA wall s",
        "ASHA eff",
        "ASHA first full s",
        "SHA wall s",
        "SHA eff",
        "SHA first full s",
        "SHA/ASHA wall",
        "SHA/ASHA first full",
        "ASHA to target s",
        "SHA to target s",
        "SHA/ASHA to target",
    ]
    print(table(heads, rows))
    emit(
        {
            "bench": "asynchrony",
            "machine": machine(),
            "load_avg": os.getloadavg()[0],
            "costs_s": COSTS,
            "runs": runs,
        }
    )


if __name__ == "__main__":
    main()
