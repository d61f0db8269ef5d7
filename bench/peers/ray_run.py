"""Ray Tune's half of bench/overhead.py and bench/scaling.py (run in .bench-venvs/ray; no hpd).

The workload of reference/anchors-perf.md: random sampling of lr ~ logU[1e-4, 1] and
momentum ~ U[0, 1], every epoch (1..27) reported, ASHAScheduler (grace 1, max_t 27,
reduction_factor 3), reuse_actors=True, ``--workers`` concurrent trials (ray.init with that many
CPUs), ``--sleep`` seconds of simulated work per epoch. Prints one JSON line: wall time of
``Tuner.fit`` (ray.init timed apart), reports, the configurations tried, the best found, the
driver's peak RSS and the peak summed RSS of the driver and all its descendants (raylet, GCS,
workers), sampled every 0.25 s.

With ``--address HOST:PORT`` it joins that cluster instead of starting one (bench/scaling.py
--ray: the same local cluster as hpd's Ray backend); the tree RSS is then the driver's alone,
the cluster's processes not being its children. ``--gpus-per-trial G`` makes each trial hold
G GPUs besides its CPU (Tune's default is one CPU and no GPU), so that on a cluster of fake
GPUs a trial occupies one GPU as hpd's slot does.
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
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from curve import loss

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler


class TreeRss(threading.Thread):
    """Peak of the summed RSS of this process and its descendants."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            pids, todo = [os.getpid()], [os.getpid()]
            while todo:
                p = todo.pop()
                try:
                    with open(f"/proc/{p}/task/{p}/children") as f:
                        kids = [int(k) for k in f.read().split()]
                except OSError:
                    kids = []
                pids += kids
                todo += kids
            total = 0
            for p in pids:
                try:
                    with open(f"/proc/{p}/statm") as f:
                        total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                except (OSError, ValueError, IndexError):
                    pass
            self.peak = max(self.peak, total)


def where() -> str:
    node = ray.get_runtime_context().get_node_id()[:8]
    return f"{node} gpu {','.join(str(g) for g in ray.get_gpu_ids())}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=256)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-epochs", type=int, default=27)
    ap.add_argument("--time-limit", type=float, default=None, help="Tune's time_budget_s")
    ap.add_argument("--address", default=None, help="join this Ray cluster (HOST:PORT)")
    ap.add_argument("--gpus-per-trial", type=float, default=0.0)
    args = ap.parse_args()
    sleep, max_epochs = args.sleep, args.max_epochs

    def trainable(config: dict) -> None:
        lr, mom = config["lr"], config["momentum"]
        # On fake GPUs, where each trial ran: which GPUs Ray gave it, on which node.
        extra = {"where": where()} if args.gpus_per_trial else {}
        for epoch in range(1, max_epochs + 1):
            if sleep:
                time.sleep(sleep)
            tune.report({"loss": loss(lr, mom, epoch), "epoch": epoch, **extra})

    mem = TreeRss()
    mem.start()
    tmp = tempfile.TemporaryDirectory(prefix="ray-bench-")
    t_init = time.monotonic()
    if args.address:
        ray.init(address=args.address, logging_level="ERROR", log_to_driver=False)
    else:
        ray.init(
            num_cpus=args.workers,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            _temp_dir=os.path.join(tmp.name, "r"),
        )
    init_s = time.monotonic() - t_init
    to_run: Any = trainable
    if args.gpus_per_trial:
        to_run = tune.with_resources(trainable, {"cpu": 1, "gpu": args.gpus_per_trial})
    tuner = tune.Tuner(
        to_run,
        param_space={"lr": tune.loguniform(1e-4, 1.0), "momentum": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(
            metric="loss",
            mode="min",
            num_samples=args.trials,
            scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=max_epochs, grace_period=1, reduction_factor=3
            ),
            max_concurrent_trials=args.workers,
            reuse_actors=True,
            time_budget_s=args.time_limit,
        ),
        run_config=tune.RunConfig(
            storage_path=os.path.join(tmp.name, "results"), name="bench", verbose=0
        ),
    )
    t0 = time.monotonic()
    results = tuner.fit()
    wall = time.monotonic() - t0
    mem.stop.set()
    configs, reports, epochs = [], 0, 0
    for r in results:
        n = int((r.metrics or {}).get("training_iteration", 0) or 0)
        if n and r.config and "lr" in r.config:
            configs.append([r.config["lr"], r.config["momentum"]])
        reports += n
        epochs += n
    metrics = [r.metrics or {} for r in results]
    best = results.get_best_result(metric="loss", mode="min", scope="last")
    print(
        json.dumps(
            {
                "framework": "ray-tune",
                "version": ray.__version__,
                "trials": len(configs),
                "workers": args.workers,
                "wall_s": wall,
                "init_s": init_s,
                "reports": reports,
                "epochs": epochs,
                "complete": sum(
                    1 for r in results if (r.metrics or {}).get("training_iteration") == max_epochs
                ),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "tree_peak_rss_mb": mem.peak / 2**20,
                "configs": configs,
                "best": [best.config["lr"], best.config["momentum"]]
                if best and best.config
                else None,
                "cut": len(configs) < args.trials,
                # Distinct (node, GPUs) a trial ran on, and distinct actor processes used.
                "placements": len({m["where"] for m in metrics if "where" in m}),
                "actors": len({m["pid"] for m in metrics if "pid" in m}),
            }
        )
    )
    ray.shutdown()
    tmp.cleanup()


if __name__ == "__main__":
    main()
