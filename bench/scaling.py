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

``--ray``: instead, 8 slots on a local Ray cluster (``bench/ray_cluster.py``: 2 raylets x 4 fake
GPUs) against hpd's local workers, three systems side by side on the same workload (default
128 trials, 50 ms epochs): hpd on 8 local fake GPUs, hpd started with ``--ray`` on the cluster
(a slot actor per GPU), and Ray Tune's ASHA on the same cluster (8 concurrent trials, each
holding 1 GPU and 1 CPU). For each: utilisation = total sleep / (8 x wall), the slot time lost
per epoch ((8 x wall - sleep) / epochs), and for hpd the cost per segment as
bench/segment_overhead.py has it (wall x slots / segments) and with the sleep taken out.
Goal: hpd-on-Ray's utilisation >= 2x Ray Tune's.

    .venv/bin/python -m bench.scaling --ray --repeats 2
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import ray_cluster
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


def run_one(
    fw: str, trials: int, slots: int, sleep: float, address: str | None = None
) -> dict[str, Any]:
    """One run of ``fw``; with ``address``, hpd-ray and ray-tune run on that Ray cluster."""
    busy_before = settle()
    if fw == "hpd-ray":
        r = run_hpd(trials, slots, sleep, "asha", ray_address=address)
    elif fw.startswith("hpd-"):
        r = run_hpd(trials, slots, sleep, fw.split("-")[1])
    elif fw == "optuna-memory":
        r = run_peer(
            "optuna_run", "optuna", trials=trials, workers=slots, storage="memory", sleep=sleep
        )
        r["longest_chain_epochs"] = MAX_EPOCHS
    else:
        # On a cluster of fake GPUs, each Tune trial holds a GPU, as hpd's slot does.
        on = {"address": address, "gpus_per_trial": 1} if address else {}
        r = run_peer("ray_run", "ray", trials=trials, workers=slots, sleep=sleep, **on)
        r["longest_chain_epochs"] = MAX_EPOCHS
    r = judge(r)
    r.update(fw=fw, slots=slots, load=loadavg()[0], busy_before=busy_before)
    work = r["epochs"] * sleep
    r["utilisation"] = work / (slots * r["wall_s"])
    r["bound_s"] = max(work / slots, r["longest_chain_epochs"] * sleep)
    r["efficiency"] = r["bound_s"] / r["wall_s"]
    return r


# == --ray: 8 slots, hpd local / hpd on Ray / Ray Tune on Ray =================================

RAY_SLOTS = 8  # bench/ray_cluster.py's default cluster: 2 nodes x 4 fake GPUs
RAY_SYSTEMS = ("hpd-local", "hpd-ray", "ray-tune")
RAY_TRIALS = 128  # ~30 s a run at 50 ms epochs: three systems x repeats in a few minutes


def segment_costs(r: dict[str, Any], slots: int, sleep: float) -> dict[str, float]:
    """Slot time per unit of work. Per segment (hpd only, Ray Tune has none): everything, as
    bench/segment_overhead.py counts it, and less the sleep. Per epoch: the slot time that was
    not sleep, whatever kept the slot from it (scheduling, start-up, ASHA's own idle tail)."""
    slot_s = slots * r["wall_s"]
    idle_s = slot_s - r["epochs"] * sleep
    out = {"idle_ms_per_epoch": 1000 * idle_s / r["epochs"]}
    if r.get("segments"):
        out["ms_per_segment"] = 1000 * slot_s / r["segments"]
        out["idle_ms_per_segment"] = 1000 * idle_s / r["segments"]
    return out


def ray_runs(trials: int, sleep: float, repeats: int, address: str) -> list[dict[str, Any]]:
    runs = []
    for rep in range(repeats):
        k = rep % len(RAY_SYSTEMS)
        for fw in RAY_SYSTEMS[k:] + RAY_SYSTEMS[:k]:  # alternate who goes first
            r = run_one("hpd-asha" if fw == "hpd-local" else fw, trials, RAY_SLOTS, sleep, address)
            r.update(fw=fw, repeat=rep, **segment_costs(r, RAY_SLOTS, sleep))
            runs.append(r)
            print(
                f"  {fw:9s} rep {rep}: {r['wall_s']:.2f} s, {r['epochs']} epochs, util"
                f" {r['utilisation']:.2f}, idle {r['idle_ms_per_epoch']:.0f} ms/epoch, load"
                f" {r['load']:.2f}",
                flush=True,
            )
    return runs


def ray_summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("wall_s", "epochs", "segments", "utilisation", "ms_per_segment")
    keys += ("idle_ms_per_segment", "idle_ms_per_epoch", "load", "placements", "actors")
    out = []
    for fw in RAY_SYSTEMS:
        g = [r for r in runs if r["fw"] == fw]
        row: dict[str, Any] = {"framework": fw, "n": len(g)}
        row.update({k: median(g, k) for k in keys})
        row.update({k: None for k, v in row.items() if v != v})  # NaN: not measured for it
        row["true_best"] = sum(r["found_true_best"] for r in g)
        out.append(row)
    return out


def print_ray_table(summary: list[dict[str, Any]]) -> None:
    cols = [
        ("system", "framework"),
        ("runs", "n"),
        ("wall s", "wall_s"),
        ("epochs", "epochs"),
        ("segments", "segments"),
        ("utilisation", "utilisation"),
        ("ms/segment (wall x 8 / segments)", "ms_per_segment"),
        ("idle ms/segment", "idle_ms_per_segment"),
        ("idle ms/epoch", "idle_ms_per_epoch"),
        ("load1", "load"),
    ]
    rows = [["-" if s[k] is None else s[k] for _, k in cols] for s in summary]
    print(table([h for h, _ in cols], rows))


def ray_main(trials: int, sleep: float, repeats: int) -> None:
    if not ray_cluster.available():
        raise SystemExit("--ray needs .bench-venvs/ray: run bench/peers/setup.sh")
    print(f"load average before: {loadavg()}", flush=True)
    t0 = time.monotonic()
    with ray_cluster.local_cluster() as address:
        up_s = time.monotonic() - t0
        print(f"Ray cluster {address}: 2 nodes x 4 fake GPUs, up in {up_s:.1f} s", flush=True)
        runs = ray_runs(trials, sleep, repeats, address)
    summary = ray_summary(runs)
    # What ASHA's rules alone allow at 8 slots (its idle tail), for scale.
    spec = hpd_spec(trials, RAY_SLOTS, sleep, "asha")
    sim = simulate(spec, RAY_SLOTS, sleep, lambda p, e: loss(p["lr"], p["momentum"], e))
    ideal_util = sim.work_s / (RAY_SLOTS * sim.wall_s)
    print()
    print_ray_table(summary)
    by = {s["framework"]: s for s in summary}
    ratio = by["hpd-ray"]["utilisation"] / by["ray-tune"]["utilisation"]
    tune = by["ray-tune"]
    print(
        f"Ray Tune ran on {tune['placements']:g} distinct (node, GPU) placements with"
        f" {tune['actors']:g} actors (median)"
    )
    print(f"zero-overhead ASHA ladder at 8 slots: utilisation {ideal_util:.2f}")
    print(
        f"hpd-on-Ray utilisation / Ray Tune's = {ratio:.2f}x (goal >= 2x); hpd-on-Ray / hpd local"
        f" = {by['hpd-ray']['utilisation'] / by['hpd-local']['utilisation']:.2f}"
    )
    emit(
        {
            "bench": "scaling_ray",
            "machine": machine(),
            "trials": trials,
            "sleep": sleep,
            "slots": RAY_SLOTS,
            "cluster_up_s": up_s,
            "ideal_utilisation": ideal_util,
            "hpd_ray_over_ray_tune": ratio,
            "summary": summary,
            "runs": runs,
        }
    )


# == the ladder of slots =======================================================================


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=None, help=f"default 256, {RAY_TRIALS} --ray")
    ap.add_argument("--ray", action="store_true", help="8 slots on a local Ray cluster (above)")
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
    if args.ray:
        ray_main(args.trials or RAY_TRIALS, args.sleep, args.repeats)
        return
    args.trials = args.trials or 256

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
