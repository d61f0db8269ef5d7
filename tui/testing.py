"""``FakeClient``: a daemon stand-in with fixed, deterministic data for TUI tests and screenshots.

It answers the same ops as the daemon (``ls``, ``status``, ``trials``, ``ladder``, ``gpus``,
``metrics``, ``events``, ``logs``, ``pause``/``resume``/``cancel``) with the JSON shapes the
daemon sends, generated from a fixed formula so snapshots never drift. ``down = True`` makes
every call raise ``DaemonNotRunning``, as when the daemon stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hpd.errors import DaemonNotRunning, RemoteError

EPOCHS_AT_RUNG = (1, 3, 9, 27)


def _loss(i: int, epoch: int) -> float:
    final = 0.08 + 0.35 * ((i * 37) % 19) / 19
    return round(final + (1 - final) * math.exp(-epoch / 3), 4)


def _trial(i: int) -> dict[str, Any]:
    rung = 3 if i in (4, 9) else 2 if i in (2, 7, 11, 15) else 1 if i % 3 == 0 else 0
    state = {0: "paused", 1: "paused", 2: "paused", 3: "completed"}[rung]
    if i in (16, 17, 18, 19):
        state = "running"
    if i == 13:
        state = "failed"
    if i >= 20:
        state, rung = "queued", 0
    epoch = EPOCHS_AT_RUNG[rung] - (1 if state == "running" else 0) if state != "queued" else 0
    results = {str(r): _loss(i, EPOCHS_AT_RUNG[r]) for r in range(rung + (state != "running"))}
    if state in ("queued", "failed"):
        results = {}
    subset = None
    if i % 4 == 1 and state != "queued":
        subset = {
            "strategy": ("gradmatch", "craig", "random")[i % 3],
            "fraction": 0.1 if i % 2 else 0.3,
            "selection_s": 1.5 + i / 10,
            "selection_total_s": 6.0 + i,
            "epoch_s": 4.0 + i / 5,
            "subset_size": 6000 if i % 2 else 18000,
            "selections": 3,
        }
    return {
        "id": i,
        "index": i - 1,
        "state": state,
        "rung": rung,
        "resource": EPOCHS_AT_RUNG[rung],
        "epoch": epoch,
        "params": {"lr": round(10 ** (-4 + (i * 7 % 40) / 10), 6), "momentum": (i * 13 % 20) / 20},
        "results": results,
        "gpu": f"gpu{i % 4}:0" if state == "running" else None,
        "attempts": 1 + rung,
        "restarts": 1 if i == 13 else 0,
        "bracket": 0,
        "error": "exit 3 at epoch 2" if state == "failed" else None,
        "checkpoint_epoch": epoch or None,
        "subset": subset,
    }


@dataclass
class FakeExperiment:
    id: int


class FakeClient:
    """Fixed data for three experiments; state-changing ops update the fake's state."""

    def __init__(self, n_trials: int = 24) -> None:
        self.trials = [_trial(i) for i in range(1, n_trials + 1)]
        self.states = {1: "running", 2: "completed", 3: "paused"}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.submitted: list[str] = []
        self.down = False

    async def close(self) -> None:
        return None

    async def submit(self, spec: str) -> FakeExperiment:
        self.submitted.append(spec)
        self.states[len(self.states) + 1] = "running"
        return FakeExperiment(len(self.states))

    async def call(self, op: str, **args: Any) -> Any:
        if self.down:
            raise DaemonNotRunning("no hpd daemon answers on /fake/hpd.sock")
        self.calls.append((op, args))
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise RemoteError("bad_request", f"unknown op {op!r}")
        return handler(**args)

    def op_ls(self) -> list[dict[str, Any]]:
        return [self.op_status(e) for e in sorted(self.states)]

    def op_status(self, exp: int) -> dict[str, Any]:
        counts: dict[str, int] = {}
        trials = self.trials if exp == 1 else []
        for t in trials:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        if exp != 1:
            counts = {"completed": 27} if self.states[exp] == "completed" else {"paused": 5}
        return {
            "id": exp,
            "name": ("synthetic", "mnist-asha", "cifar-subset")[(exp - 1) % 3],
            "state": self.states[exp],
            "trials": counts,
            "best": {"trial": 4, "value": 0.0987, "params": self.trials[3]["params"], "rung": 3},
            "metric": "loss",
            "mode": "min",
            "searcher": "asha",
            "max_trials": 81,
            "created_at": 1_700_000_000.0,
            "elapsed_s": 754.2 * exp,
        }

    def op_trials(self, exp: int) -> list[dict[str, Any]]:
        return self.trials if exp == 1 else []

    def op_ladder(self, exp: int) -> list[dict[str, Any]]:
        if exp != 1:
            return []
        rows: list[tuple[int, int, int, int, float | None, float]] = [
            (1, 19, 6, 4, 0.8, 0.5512),
            (3, 6, 4, 0, 0.3712, 0.2104),
        ]
        rows += [(9, 4, 2, 0, 0.1873, 0.1311), (27, 2, 0, 0, None, 0.0987)]
        return [
            {
                "bracket": 0,
                "rung": r,
                "resource": res,
                "results": n,
                "promoted": prom,
                "running": run,
                "cutoff": n // 3,
                "cutoff_value": cut,
                "best": best,
            }
            for r, (res, n, prom, run, cut, best) in enumerate(rows)
        ]

    def op_gpus(self) -> list[dict[str, Any]]:
        out = []
        for g in range(4):
            out.append(
                {
                    "slot": f"gpu{g}:0",
                    "gpu": g,
                    "uuid": f"GPU-fake-{g}",
                    "name": "Fake GPU",
                    "utilization": (97, 64, 12, 0)[g],
                    "memory_used_mb": (70000, 40000, 9000, 0)[g],
                    "memory_total_mb": 81559,
                    "trials": [t["id"] for t in self.trials if t["gpu"] == f"gpu{g}:0"],
                }
            )
        out.append({"slot": "cpu:0", "gpu": None, "uuid": None, "name": "cpu", "trials": []})
        return out

    def op_metrics(self, trials: list[int]) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for tid in trials:
            t = self.trials[tid - 1]
            out[str(tid)] = [{"epoch": e, "loss": _loss(tid, e)} for e in range(1, t["epoch"] + 1)]
        return out

    def op_events(self, exp: int, after: int = 0) -> list[dict[str, Any]]:
        evs: list[dict[str, Any]] = []
        for t in self.trials[:12]:
            tid = t["id"]
            evs.append({"type": "trial_created", "trial": tid, "index": t["index"]})
            for rung, value in t["results"].items():
                evs.append({"type": "result", "trial": tid, "rung": int(rung), "value": value})
                if int(rung) < t["rung"]:
                    reason = {"population": 9, "rank": 2, "cutoff": 3, "cutoff_value": 0.69}
                    evs.append(
                        {"type": "promoted", "trial": tid, "rung": int(rung), "reason": reason}
                    )
        for seq, ev in enumerate(evs, 1):
            ev.update(seq=seq, time=1_700_000_000.0 + seq)
        return [e for e in evs if e["seq"] > after]

    def op_logs(self, trial: int, offset: int = 0) -> dict[str, Any]:
        text = (
            f"[hpd] attempt 1: rung 0, epochs 1..1, slot gpu0:0\nepoch 1 loss {_loss(trial, 1)}\n"
        )
        return {"text": text[offset:], "offset": len(text), "final": False}

    def _set(self, exp: int, allowed: tuple[str, ...], new: str) -> dict[str, Any]:
        if self.states.get(exp) not in allowed:
            raise RemoteError("bad_state", f"experiment {exp} is {self.states.get(exp)}")
        self.states[exp] = new
        return {"id": exp, "state": new}

    def op_pause(self, exp: int) -> dict[str, Any]:
        return self._set(exp, ("running",), "paused")

    def op_resume(self, exp: int) -> dict[str, Any]:
        return self._set(exp, ("paused",), "running")

    def op_cancel(self, exp: int) -> dict[str, Any]:
        return self._set(exp, ("running", "paused"), "cancelled")
