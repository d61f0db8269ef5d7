"""Optuna's half of bench/overhead.py and bench/scaling.py (run in .bench-venvs/optuna; no hpd).

The workload of reference/anchors-perf.md: random sampling of lr ~ logU[1e-4, 1] and
momentum ~ U[0, 1], every epoch (1..27) reported, SuccessiveHalvingPruner (min_resource 1,
reduction_factor 3), ``--sleep`` seconds of simulated work per epoch, ``--workers`` threads.
Prints one JSON line: wall time of ``optimize``, reports, the configurations tried, the best
found, the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import optuna
from curve import loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=256)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--storage", choices=("memory", "sqlite"), default="memory")
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-epochs", type=int, default=27)
    ap.add_argument(
        "--time-limit", type=float, default=None, help="stop starting trials after this many s"
    )
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    tmp = tempfile.TemporaryDirectory(prefix="optuna-bench-")
    storage = None if args.storage == "memory" else f"sqlite:///{tmp.name}/study.db"
    reports = 0
    lock = threading.Lock()

    def objective(trial: optuna.Trial) -> float:
        nonlocal reports
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        mom = trial.suggest_float("momentum", 0.0, 1.0)
        value = float("nan")
        for epoch in range(1, args.max_epochs + 1):
            if args.sleep:
                time.sleep(args.sleep)
            value = loss(lr, mom, epoch)
            trial.report(value, epoch)
            with lock:
                reports += 1
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    t0 = time.monotonic()
    study = optuna.create_study(
        direction="minimize",
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=args.seed),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    )
    study.optimize(objective, n_trials=args.trials, n_jobs=args.workers, timeout=args.time_limit)
    wall = time.monotonic() - t0
    trials = study.get_trials(deepcopy=False)
    configs = [[t.params["lr"], t.params["momentum"]] for t in trials if "momentum" in t.params]
    try:
        best = study.best_trial.params
        best_cfg = [best["lr"], best["momentum"]]
    except ValueError:
        best_cfg = None
    epochs = sum(len(t.intermediate_values) for t in trials)
    print(
        json.dumps(
            {
                "framework": f"optuna-{args.storage}",
                "version": optuna.__version__,
                "trials": len(trials),
                "workers": args.workers,
                "wall_s": wall,
                "reports": reports,
                "epochs": epochs,
                "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "configs": configs,
                "best": best_cfg,
                "cut": len(trials) < args.trials,
            }
        )
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
