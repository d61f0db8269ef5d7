"""Scaling: asynchronous ASHA against synchronous SHA (both hpd) and Ray Tune's ASHA, 1..16 slots.

N configurations (default 256) of the synthetic curve whose epochs sleep ``--sleep`` s (simulated
GPU work), eta 3, epochs 1..27 (rungs 1/3/9/27), on 1, 2, 4, 8 and 16 slots (hpd: that many fake
GPUs; Ray Tune: that many concurrent trials with reuse_actors, only at ``--ray-slots``).
Each run starts once the machine is quiet (``settle``). For every run: wall time, speedup over the same framework on one slot, utilisation = total sleep
/ (slots x wall), and efficiency = bound / wall with bound = max(total epochs x sleep / slots,
the longest chain of one trial through every rung x sleep). hpd's total epochs come from its
segments (sum of resource - from_epoch over segment_started); Ray Tune's from its reports (one
per epoch). Then ASHA-over-SHA speedups (SHA wall / ASHA wall) beside the seeds' ASH vs SH
table (1.27x, 1.84x, 3.19x, 3.57x at 4, 8, 16, 32 threads). Goal: efficiency >= 0.9 at 8 slots.

For hpd's rows it also simulates the same ladder with zero overhead (``bench/ideal.py``): the
"ideal" efficiency is what the rules alone allow (ASHA's last promotions leave slots idle), and
"of ideal" = ideal wall / hpd wall is the share of that schedule hpd achieves.

    .venv/bin/python -m bench.scaling --trials 256 --slots 1 2 4 8 16 --ray-slots 4 8
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import emit, machine, table
from bench.ideal import simulate
from bench.side_by_side import (
    MAX_EPOCHS,
    hpd_spec,
    judge,
    loadavg,
    median,
    peer_available,
    run_hpd,
    run_peer,
    settle,
)
from examples.synthetic.train import loss

SEEDS_ASH_OVER_SH = {4: 1.27, 8: 1.84, 16: 3.19, 32: 3.57}


def run_one(fw: str, trials: int, slots: int, sleep: float) -> dict[str, Any]:
    busy_before = settle()
    if fw.startswith("hpd-"):
        r = run_hpd(trials, slots, sleep, fw.split("-")[1])
    elif fw == "optuna-memory":
        r = run_peer(
            "optuna_run", "optuna", trials=trials, workers=slots, storage="memory", sleep=sleep
        )
        r["longest_chain_epochs"] = MAX_EPOCHS
    else:
        r = run_peer("ray_run", "ray", trials=trials, workers=slots, sleep=sleep)
        r["longest_chain_epochs"] = MAX_EPOCHS
    r = judge(r)
    r.update(fw=fw, slots=slots, load=loadavg()[0], busy_before=busy_before)
    work = r["epochs"] * sleep
    r["utilisation"] = work / (slots * r["wall_s"])
    r["bound_s"] = max(work / slots, r["longest_chain_epochs"] * sleep)
    r["efficiency"] = r["bound_s"] / r["wall_s"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=256)
    ap.add_argument("--sleep", type=float, default=0.05)
    ap.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--ray-slots", type=int, nargs="*", default=[1, 4, 8])
    ap.add_argument(
        "--optuna-slots",
        type=int,
        nargs="*",
        default=[],
        help="also Optuna in memory (threads, SuccessiveHalvingPruner) at these",
    )
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    runs: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for slots in args.slots:
            fws = ["hpd-asha", "hpd-sha"]
            if slots in args.ray_slots and peer_available("ray"):
                fws.append("ray-tune")
            if slots in args.optuna_slots and peer_available("optuna"):
                fws.append("optuna-memory")
            k = (rep + slots) % len(fws)
            for fw in fws[k:] + fws[:k]:  # alternate who goes first
                r = run_one(fw, args.trials, slots, args.sleep)
                r["repeat"] = rep
                runs.append(r)
                print(
                    f"  {fw:13s} {slots:2d} slots rep {rep}: {r['wall_s']:.2f} s, {r['epochs']} epochs, "
                    f"util {r['utilisation']:.2f}, eff {r['efficiency']:.2f}, load {r['load']:.2f}",
                    flush=True,
                )
    if args.ray_slots and not peer_available("ray"):
        print("Ray Tune skipped: no .bench-venvs/ray (run bench/peers/setup.sh)")

    summary: list[dict[str, Any]] = []
    ideal: dict[tuple[str, int], Any] = {}
    for fw in ("hpd-asha", "hpd-sha"):
        for slots in args.slots:
            spec = hpd_spec(args.trials, slots, args.sleep, fw.split("-")[1])
            ideal[fw, slots] = simulate(
                spec, slots, args.sleep, lambda p, e: loss(p["lr"], p["momentum"], e)
            )
    for fw in dict.fromkeys(r["fw"] for r in runs):
        base = median([r for r in runs if r["fw"] == fw and r["slots"] == 1], "wall_s")
        for slots in args.slots:
            g = [r for r in runs if r["fw"] == fw and r["slots"] == slots]
            if g:
                wall = median(g, "wall_s")
                summary.append(
                    {
                        "framework": fw,
                        "slots": slots,
                        "n": len(g),
                        "wall_s": wall,
                        "epochs": median(g, "epochs"),
                        "speedup": base / wall,
                        "utilisation": median(g, "utilisation"),
                        "bound_s": median(g, "bound_s"),
                        "efficiency": median(g, "efficiency"),
                        "true_best": sum(r["found_true_best"] for r in g),
                        "load": median(g, "load"),
                    }
                )
                sim = ideal.get((fw, slots))
                if sim is not None:
                    summary[-1].update(
                        ideal_wall_s=sim.wall_s,
                        ideal_efficiency=sim.efficiency(slots),
                        of_ideal=sim.wall_s / wall,
                    )
    print()
    print(
        table(
            [
                "framework",
                "slots",
                "runs",
                "wall s",
                "epochs",
                "speedup vs 1 slot",
                "utilisation",
                "bound s",
                "efficiency (bound/wall)",
                "ideal eff (zero overhead)",
                "of ideal (ideal wall/wall)",
                "true best",
                "load1",
            ],
            [
                [
                    s["framework"],
                    s["slots"],
                    s["n"],
                    s["wall_s"],
                    s["epochs"],
                    s["speedup"],
                    s["utilisation"],
                    s["bound_s"],
                    s["efficiency"],
                    s.get("ideal_efficiency", "-"),
                    s.get("of_ideal", "-"),
                    f"{s['true_best']}/{s['n']}",
                    s["load"],
                ]
                for s in summary
            ],
        )
    )
    cmp = []
    for slots in args.slots:
        a = next((s for s in summary if s["framework"] == "hpd-asha" and s["slots"] == slots), None)
        b = next((s for s in summary if s["framework"] == "hpd-sha" and s["slots"] == slots), None)
        ray = next(
            (s for s in summary if s["framework"] == "ray-tune" and s["slots"] == slots), None
        )
        if a and b:
            cmp.append(
                {
                    "slots": slots,
                    "asha_over_sha": b["wall_s"] / a["wall_s"],
                    "seeds_ash_over_sh": SEEDS_ASH_OVER_SH.get(slots),
                    "hpd_asha_over_ray": ray["wall_s"] / a["wall_s"] if ray else None,
                }
            )
    print()
    print(
        table(
            [
                "slots",
                "hpd ASHA over hpd SHA (SHA wall / ASHA wall)",
                "seeds' ASH vs SH",
                "hpd ASHA over Ray Tune ASHA (Ray wall / hpd wall)",
            ],
            [
                [
                    c["slots"],
                    c["asha_over_sha"],
                    c["seeds_ash_over_sh"] or "-",
                    c["hpd_asha_over_ray"] if c["hpd_asha_over_ray"] else "-",
                ]
                for c in cmp
            ],
        )
    )
    eight = next((s for s in summary if s["framework"] == "hpd-asha" and s["slots"] == 8), None)
    if eight:
        print(
            f"hpd ASHA at 8 slots: {eight['efficiency']:.2f} of the bound (goal >= 0.9); the same"
            f" ladder with zero overhead: {eight['ideal_efficiency']:.2f}; hpd reaches"
            f" {eight['of_ideal']:.2f} of that schedule"
        )
    emit(
        {
            "bench": "scaling",
            "machine": machine(),
            "trials": args.trials,
            "sleep": args.sleep,
            "summary": summary,
            "asha_over_sha": cmp,
            "runs": runs,
        }
    )


if __name__ == "__main__":
    main()
