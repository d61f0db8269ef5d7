"""Overhead side by side: hpd against Optuna 5 and Ray Tune 2 on zero-cost trials.

ASHA (eta 3, epochs 1..27, rungs 1/3/9/27) over N zero-cost trials of the synthetic curve
(reference/anchors-perf.md), every epoch reported: hpd (entrypoint trials, 4 fake-GPU slots,
every report durably committed) against Optuna (SuccessiveHalvingPruner, RandomSampler, one
worker; in memory and SQLite) and Ray Tune (ASHAScheduler, reuse_actors=True, 4 concurrent).
Runs alternate between frameworks, ``--repeats`` times, each after the machine has gone quiet
(``settle``: a peer's processes linger after its run); prints each run, the medians, hpd's
reports/s over each peer's, and a final JSON line. Peers need ``bench/peers/setup.sh`` first;
a missing peer venv is skipped (and said). "true best" = the framework's answer is the
configuration, among those it tried, whose curve is lowest at epoch 27.

    .venv/bin/python -m bench.overhead --trials 256 --repeats 3
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import emit, machine, table
from bench.side_by_side import (
    judge,
    loadavg,
    median,
    peer_available,
    run_hpd,
    run_peer,
    settle,
)

SLOTS = 4
FRAMEWORKS = ("hpd", "optuna-memory", "optuna-sqlite", "ray-tune")


def run_one(fw: str, trials: int, limit: float | None) -> dict[str, Any]:
    extra = {"time_limit": limit} if limit else {}
    timeout = (limit or 1800) + 300
    busy_before = settle()
    if fw == "hpd":
        r = run_hpd(trials, SLOTS, 0.0, "asha")
    elif fw == "optuna-memory":
        r = run_peer("optuna_run", "optuna", trials=trials, workers=1, storage="memory")
    elif fw == "optuna-sqlite":
        r = run_peer(
            "optuna_run", "optuna", timeout, trials=trials, workers=1, storage="sqlite", **extra
        )
    else:
        r = run_peer("ray_run", "ray", timeout, trials=trials, workers=SLOTS, **extra)
    r["framework"] = "hpd" if fw == "hpd" else r["framework"]
    r["load"] = loadavg()[0]
    r["busy_before"] = busy_before
    return judge(r)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    ap.add_argument(
        "--peer-time-limit",
        type=float,
        default=None,
        help="cap Optuna-on-SQLite's and Ray Tune's searches at this many seconds "
        "(optimize's timeout, Tune's time_budget_s); a capped run is marked 'cut'",
    )
    args = ap.parse_args()

    fws = [f for f in args.frameworks if f == "hpd" or peer_available(f.split("-")[0])]
    skipped = sorted(set(args.frameworks) - set(fws))
    if skipped:
        print(f"skipped (no venv; run bench/peers/setup.sh): {', '.join(skipped)}")
    runs: list[dict[str, Any]] = []
    for trials in args.trials:
        for rep in range(args.repeats):
            order = fws[rep % len(fws) :] + fws[: rep % len(fws)]  # rotate who goes first
            for fw in order:
                r = run_one(fw, trials, args.peer_time_limit)
                r.update(repeat=rep, requested_trials=trials, fw=fw)
                runs.append(r)
                print(
                    f"  {trials:5d} {fw:14s} rep {rep}: {r['wall_s']:.2f} s, {r['reports']} reports, "
                    f"{r['reports_per_s']:.0f} reports/s, load {r['load']:.2f}",
                    flush=True,
                )

    rows, summary = [], []
    for trials in args.trials:
        hpd_rps = median(
            [r for r in runs if r["requested_trials"] == trials and r["fw"] == "hpd"],
            "reports_per_s",
        )
        for fw in fws:
            g = [r for r in runs if r["requested_trials"] == trials and r["fw"] == fw]
            if not g:
                continue
            s = {
                "trials": trials,
                "framework": fw,
                "n": len(g),
                "wall_s": median(g, "wall_s"),
                "reports": median(g, "reports"),
                "reports_per_s": median(g, "reports_per_s"),
                "reports_per_s_min": min(r["reports_per_s"] for r in g),
                "reports_per_s_max": max(r["reports_per_s"] for r in g),
                "peak_rss_mb": median(g, "peak_rss_mb"),
                "true_best": f"{sum(r['found_true_best'] for r in g)}/{len(g)}",
                "cut": any(r.get("cut") for r in g),
                "load": median(g, "load"),
            }
            s["hpd_over"] = hpd_rps / s["reports_per_s"] if fw != "hpd" else 1.0
            summary.append(s)
            rows.append(
                [
                    trials,
                    fw + (" (cut)" if s["cut"] else ""),
                    s["n"],
                    s["wall_s"],
                    s["reports"],
                    s["reports_per_s"],
                    f"{s['reports_per_s_min']:.0f}-{s['reports_per_s_max']:.0f}",
                    s["peak_rss_mb"],
                    s["true_best"],
                    s["load"],
                    "" if fw == "hpd" else f"{s['hpd_over']:.1f}x",
                ]
            )
    print()
    print(
        table(
            [
                "trials",
                "framework",
                "runs",
                "wall s (median)",
                "reports",
                "reports/s (median)",
                "range",
                "peak RSS MB",
                "true best",
                "load1",
                "hpd reports/s over it",
            ],
            rows,
        )
    )
    print(
        "peak RSS: hpd = the daemon's VmHWM; Optuna = the process; Ray Tune = the driver "
        "(tree_peak_rss_mb in the JSON adds raylet, GCS and workers)"
    )
    emit(
        {
            "bench": "overhead",
            "machine": machine(),
            "slots": SLOTS,
            "summary": summary,
            "runs": runs,
        }
    )


if __name__ == "__main__":
    main()
