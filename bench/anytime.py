"""Search quality against wall-clock time, side by side: hpd (tpe, the real daemon, 4 slots)
against Optuna (TPE + SuccessiveHalvingPruner, ``n_jobs=4``, JournalFile storage) and Ray Tune
(ASHAScheduler + OptunaSearch, 4 concurrent trials), each in its own environment
(``make bench-peers``), on ``bench.peers.problems``'s Hartmann-6 problem with 20 ms epochs.

Every search runs ``--seconds`` of wall time and is read by one rule at each moment (the trial
at the highest resource reached so far, best value there). Prints the median regret at a few
moments and how long hpd takes to reach the regret each peer ends with.
Run: ``python -m bench.anytime [--seeds 3] [--seconds 40]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, daemon, emit, machine, table
from bench.peers.problems import SPACE, answer_regret, by_name

Events = list[tuple[float, Any, int, float]]
PEERS = {
    "optuna": REPO / ".bench-venvs/optuna/bin/python",
    "ray": REPO / ".bench-venvs/ray/bin/python",
}


def hpd_run(
    problem: str, seed: int, seconds: float, sleep: float, slots: int
) -> tuple[Events, dict[Any, Any]]:
    spec = {
        "name": "anytime",
        "metric": "loss",
        "mode": "min",
        "seed": seed,
        "entrypoint": "bench.peers.problems:train",
        "workdir": str(REPO),
        "searcher": {
            "name": "asha",
            "max_trials": 100_000,
            "min_resource": 1,
            "max_resource": 27,
            "eta": 3,
            "sampler": "tpe",
        },
        "space": SPACE,
        "resources": {"gpus_per_trial": 0, "max_concurrent": slots},
        "env": {"BENCH_PROBLEM": problem, "BENCH_SEED": str(seed), "BENCH_SLEEP": str(sleep)},
    }
    with daemon(fake_gpus=0, args=("--cpu-slots", str(slots))) as c:
        t0 = time.time()
        exp = c.submit(spec)
        time.sleep(seconds)  # the search runs for its wall budget; nothing to wait on
        exp.cancel()
        events = exp.events()
        trials = {t["id"]: t["params"] for t in exp.trials()}
    out: Events = [
        (e["time"] - t0, e["trial"], int(e["epoch"]), float(e["value"]))
        for e in events
        if e["type"] == "result" and e["time"] - t0 <= seconds
    ]
    return out, trials


def peer_run(
    name: str, problem: str, seed: int, seconds: float, sleep: float, slots: int
) -> tuple[Events, dict[Any, Any]] | None:
    python = PEERS[name]
    if not python.exists():
        print(f"({name}: {python} missing; run make bench-peers)")
        return None
    cmd = [
        str(python),
        str(REPO / "bench/peers/anytime_run.py"),
        "--framework",
        name,
        "--problem",
        problem,
        "--seed",
        str(seed),
        "--seconds",
        str(seconds),
        "--sleep",
        str(sleep),
        "--workers",
        str(slots),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 4 + 180, cwd=REPO)
    if proc.returncode != 0:
        print(f"({name} failed: {proc.stderr[-1500:]})")
        return None
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    events = [
        (float(t), trial, int(ep), float(v))
        for t, trial, ep, v in data["events"]
        if float(t) <= seconds
    ]
    return events, data["params"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--sleep", type=float, default=0.02)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--problem", default="hartmann6-mixed")
    ap.add_argument("--peers", nargs="*", default=["optuna", "ray"])
    ap.add_argument("--plot", default="bench/results/anytime.png")
    args = ap.parse_args()
    problem = by_name(args.problem)
    moments = [m for m in (2.5, 5, 10, 20, 30, 40, 60, 90, 120) if m <= args.seconds]
    if moments[-1] != args.seconds:
        moments.append(args.seconds)
    curves: dict[str, list[list[float]]] = {}
    to_final: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        runs = {"hpd tpe": hpd_run(args.problem, seed, args.seconds, args.sleep, args.slots)}
        for peer in args.peers:
            got = peer_run(peer, args.problem, seed, args.seconds, args.sleep, args.slots)
            if got is not None:
                runs[peer] = got
        for name, (events, params) in runs.items():
            curves.setdefault(name, []).append(
                [answer_regret(problem, events, params, m) for m in moments]
            )
        hpd_events, hpd_params = runs["hpd tpe"]
        for name, (events, params) in runs.items():
            if name == "hpd tpe":
                continue
            final = answer_regret(problem, events, params, args.seconds)
            reached = next(
                (
                    t
                    for t, *_ in hpd_events
                    if answer_regret(problem, hpd_events, hpd_params, t) <= final
                ),
                None,
            )
            to_final.setdefault(name, []).append(
                reached / args.seconds if reached is not None else float("inf")
            )
        print(
            f"seed {seed}: " + ", ".join(f"{n} {c[-1][-1]:.4f}" for n, c in curves.items()),
            flush=True,
        )
    rows = [
        [name, *(statistics.median(c[i] for c in cs) for i in range(len(moments)))]
        for name, cs in curves.items()
    ]
    print(table(["search", *(f"regret at {m:g} s" for m in moments)], rows))
    for name, fr in to_final.items():
        print(
            f"hpd reaches {name}'s final regret in {statistics.median(fr):.2f} of its wall time (median; goal <= 0.5)"
        )
    _plot(curves, moments, args.plot)
    emit(
        {
            "bench": "anytime",
            "seeds": args.seeds,
            "seconds": args.seconds,
            "moments": moments,
            "median_regret": {n: r[1:] for n, *r in [[row[0], *row] for row in rows]},
            "hpd_time_to_peer_final": {n: statistics.median(v) for n, v in to_final.items()},
            "machine": machine(),
        }
    )


def _plot(curves: dict[str, list[list[float]]], moments: list[float], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    for name, cs in curves.items():
        ax.plot(
            moments,
            [statistics.median(c[i] for c in cs) for i in range(len(moments))],
            marker="o",
            label=name,
        )
    ax.set_yscale("log")
    ax.set_xlabel("wall-clock seconds (4 slots, 20 ms epochs)")
    ax.set_ylabel("median regret")
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
