"""The peers' half of bench/anytime.py (run in a peer's venv; no hpd import).

``--framework optuna``: TPESampler (multivariate, constant liar) with SuccessiveHalvingPruner,
``n_jobs`` threads, JournalFile storage (Optuna's recommended storage for parallel workers).
``--framework ray``: Ray Tune's ASHAScheduler with OptunaSearch (the same TPE) and
``--workers`` concurrent trials. Each epoch sleeps ``--sleep`` s. Runs ``--seconds`` of wall
time; prints one JSON line: every rung result as (seconds since the search began, trial,
epoch, value), and each trial's parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from problems import MAX_R, RUNGS, by_name, suggest


def run_optuna(args: argparse.Namespace) -> dict[str, Any]:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    problem = by_name(args.problem)
    tmp = tempfile.TemporaryDirectory(prefix="optuna-anytime-")
    storage = JournalStorage(JournalFileBackend(os.path.join(tmp.name, "journal.log")))
    sampler = optuna.samplers.TPESampler(seed=args.seed, multivariate=True, constant_liar=True)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner)
    events: list[list[Any]] = []
    params: dict[str, Any] = {}
    lock = threading.Lock()
    t0 = time.monotonic()

    def objective(trial: Any) -> float:
        p = suggest(trial)
        with lock:
            params[str(trial.number)] = p
        value = float("nan")
        for epoch in range(1, MAX_R + 1):
            time.sleep(args.sleep)
            value = problem.value(p, epoch, args.seed)
            trial.report(value, epoch)
            if epoch in RUNGS:
                with lock:
                    events.append([time.monotonic() - t0, str(trial.number), epoch, value])
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_jobs=args.workers, timeout=args.seconds)
    return {
        "framework": "optuna",
        "version": optuna.__version__,
        "events": events,
        "params": params,
    }


def run_ray(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, seed, sleep = args.problem, args.seed, args.sleep

    def trainable(config: dict[str, Any]) -> None:
        problem = by_name(name)
        start = time.time()
        for epoch in range(1, MAX_R + 1):
            time.sleep(sleep)
            tune.report({"loss": problem.value(config, epoch, seed), "epoch": epoch, "t": start})

    tmp = tempfile.TemporaryDirectory(prefix="ray-anytime-")
    ray.init(
        num_cpus=args.workers,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        _temp_dir=os.path.join(tmp.name, "r"),
    )
    space = {
        "a": tune.uniform(0.0, 1.0),
        "b": tune.uniform(0.0, 1.0),
        "lr": tune.loguniform(1e-4, 1.0),
        "width": tune.lograndint(8, 513),
        "depth": tune.randint(1, 11),
        "opt": tune.choice(["sgd", "adam", "rmsprop", "adagrad"]),
    }
    searcher = OptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    )
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            search_alg=searcher,
            num_samples=100_000,
            scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=MAX_R, grace_period=1, reduction_factor=3
            ),
            max_concurrent_trials=args.workers,
            time_budget_s=args.seconds,
        ),
        run_config=tune.RunConfig(
            storage_path=os.path.join(tmp.name, "results"), name="anytime", verbose=0
        ),
    )
    t0 = time.time()
    results = tuner.fit()
    events: list[list[Any]] = []
    params: dict[str, Any] = {}
    for i, r in enumerate(results):
        if r.config is None or r.metrics_dataframe is None:
            continue
        params[str(i)] = dict(r.config)
        for row in r.metrics_dataframe.itertuples():
            if int(row.epoch) in RUNGS:
                events.append([float(row.timestamp) - t0, str(i), int(row.epoch), float(row.loss)])
    events.sort()
    ray.shutdown()
    return {"framework": "ray-tune", "version": ray.__version__, "events": events, "params": params}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--framework", choices=("optuna", "ray"), required=True)
    ap.add_argument("--problem", default="hartmann6-mixed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--sleep", type=float, default=0.02)
    ap.add_argument("--seconds", type=float, default=40.0)
    args = ap.parse_args()
    out = run_optuna(args) if args.framework == "optuna" else run_ray(args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
