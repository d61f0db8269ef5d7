"""Run hpd and a peer framework on the same synthetic workload; helpers for overhead.py and scaling.py.

hpd runs in this venv through ``bench.common.daemon`` (a real daemon on fake GPUs); the peers run
as subprocesses of their own venvs (``bench/peers/setup.sh``), each printing one JSON line. Every
run returns one dict with the same keys: framework, trials, workers, wall_s, reports, epochs,
configs (the (lr, momentum) pairs tried), best (the framework's own answer), peak_rss_mb.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, daemon
from examples.synthetic.train import loss

VENVS = REPO / ".bench-venvs"
PEERS = REPO / "bench" / "peers"
MAX_EPOCHS = 27


def hpd_spec(trials: int, slots: int, sleep: float, searcher: str = "asha") -> dict[str, Any]:
    return {
        "name": f"bench-{searcher}",
        "metric": "loss",
        "mode": "min",
        "workdir": str(REPO),
        "entrypoint": "bench.trials:zero_cost",
        "searcher": {
            "name": searcher,
            "max_trials": trials,
            "min_resource": 1,
            "max_resource": MAX_EPOCHS,
            "eta": 3,
        },
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
            "momentum": {"type": "uniform", "low": 0.0, "high": 1.0},
            "sleep": {"type": "choice", "values": [sleep]},
        },
        "resources": {"gpus_per_trial": 1, "max_concurrent": slots},
    }


def _proc_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def run_hpd(
    trials: int,
    slots: int,
    sleep: float = 0.0,
    searcher: str = "asha",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """One search on a fresh daemon: on ``slots`` fake GPUs of this machine, or, with
    ``ray_address``, on the GPUs of that Ray cluster (``hpd start --ray``; its slot actors are
    created by the search, so their start-up is in the wall time as warm workers' is)."""
    args = ("--cpu-slots", "1")
    if ray_address:
        args += ("--ray", ray_address)
    with daemon(fake_gpus=slots, args=args) as client:
        pid = int(client.ping()["pid"])
        t0 = time.monotonic()
        exp = client.submit(hpd_spec(trials, slots, sleep, searcher))
        status = exp.wait()
        wall = time.monotonic() - t0
        daemon_hwm = _proc_kb(pid, "VmHWM")
        kids_hwm = sum(_proc_kb(p, "VmHWM") for p in _descendants(pid))
        events = exp.events()
        exported = exp.export()["trials"]
        best = exp.best()
    segs = [e for e in events if e["type"] == "segment_started"]
    epochs = sum(int(e["resource"]) - int(e["from_epoch"]) for e in segs)
    configs = [[t["params"]["lr"], t["params"]["momentum"]] for t in exported]
    # The longest chain of one trial through every rung: its segments' epochs, back to back.
    per_trial: dict[int, int] = {}
    for e in segs:
        per_trial[e["trial"]] = (
            per_trial.get(e["trial"], 0) + int(e["resource"]) - int(e["from_epoch"])
        )
    return {
        "framework": f"hpd-{searcher}",
        "trials": len(exported),
        "workers": slots,
        "wall_s": wall,
        "state": status["state"],
        "reports": sum(len(t["metrics"]) for t in exported),
        "epochs": epochs,
        "segments": len(segs),
        "longest_chain_epochs": max(per_trial.values(), default=0),
        "complete": sum(1 for t in exported if t.get("epoch") == MAX_EPOCHS),
        "peak_rss_mb": daemon_hwm / 1024,
        "workers_rss_mb": kids_hwm / 1024,
        "configs": configs,
        "best": [best["params"]["lr"], best["params"]["momentum"]] if best else None,
    }


def peer_available(name: str) -> bool:
    return (VENVS / name / ".done").exists()


def run_peer(script: str, venv: str, timeout: float = 900, **args: Any) -> dict[str, Any]:
    """``bench/peers/<script>.py`` in ``.bench-venvs/<venv>``, its last stdout line as JSON."""
    cmd = [str(VENVS / venv / "bin" / "python"), str(PEERS / f"{script}.py")]
    for k, v in args.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def judge(run: dict[str, Any]) -> dict[str, Any]:
    """Adds reports/s and whether the framework's best is the true best of what it tried."""
    configs = [tuple(c) for c in run.pop("configs")]
    true = min(configs, key=lambda c: loss(c[0], c[1], MAX_EPOCHS)) if configs else None
    best = tuple(run["best"]) if run.get("best") else None
    run["reports_per_s"] = run["reports"] / run["wall_s"] if run["wall_s"] else 0.0
    run["true_best"] = list(true) if true else None
    run["found_true_best"] = best == true
    run["best_loss27"] = loss(best[0], best[1], MAX_EPOCHS) if best else None
    run["true_loss27"] = loss(true[0], true[1], MAX_EPOCHS) if true else None
    return run


def median(runs: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # total, idle + iowait


def settle(busy_below: float = 0.15, timeout: float = 60.0) -> float:
    """Wait until the machine is quiet: less than ``busy_below`` of the CPUs busy over half a
    second (a peer's processes, Ray's raylet above all, linger after its run). Returns the last
    busy share measured; gives up after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    busy = 1.0
    while time.monotonic() < deadline:
        t0, i0 = _cpu_times()
        time.sleep(0.5)
        t1, i1 = _cpu_times()
        busy = 1.0 - (i1 - i0) / max(1, t1 - t0)
        if busy < busy_below:
            break
    return busy
