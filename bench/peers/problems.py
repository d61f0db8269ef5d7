"""The multi-fidelity test problems of bench/quality.py and bench/anytime.py, standalone.

No hpd import: the peers' scripts (in their own venvs) load this file as ``problems``. Each
problem maps a classic test function onto a mixed space of six hyperparameters (two floats, a
log float, a log int, an int, a choice) and gives every configuration a learning curve that
falls towards its final value at a speed of its own, so that curves cross: the early ranking
differs from the final one. ``train`` is the same curve as an hpd trial (``entrypoint =
"bench.peers.problems:train"``; ``BENCH_PROBLEM``, ``BENCH_SEED``, ``BENCH_SLEEP`` from the
spec's env).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Params = dict[str, Any]
MAX_R, ETA = 27, 3

SPACE: dict[str, Any] = {
    "a": {"type": "uniform", "low": 0.0, "high": 1.0},
    "b": {"type": "uniform", "low": 0.0, "high": 1.0},
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
    "width": {"type": "int", "low": 8, "high": 512, "log": True},
    "depth": {"type": "int", "low": 1, "high": 10},
    "opt": {"type": "choice", "values": ["sgd", "adam", "rmsprop", "adagrad"]},
}
_OPT_POINT = {"sgd": 0.15, "adam": 0.45, "rmsprop": 0.7, "adagrad": 0.95}


def _unit(p: Params) -> list[float]:
    """The six hyperparameters as coordinates in [0, 1]^6."""
    return [
        float(p["a"]),
        float(p["b"]),
        (math.log10(float(p["lr"])) + 4) / 4,
        (math.log2(int(p["width"])) - 3) / 6,
        (int(p["depth"]) - 1) / 9,
        _OPT_POINT[str(p["opt"])],
    ]


def _branin(x: list[float]) -> float:
    """Branin on (a, b) scaled to its box, on a log scale (so that its three basins, not its
    steep walls, set the ranking), plus a quadratic bowl in the other four (min 0)."""
    x1, x2 = -5 + 15 * x[0], 15 * x[1]
    b = (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
    b += 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10
    bowl = sum((xi - c) ** 2 for xi, c in zip(x[2:], (0.6, 0.4, 0.3, 0.45), strict=True))
    return math.log1p(max(b - 0.397887, 0.0)) / math.log1p(308.0) + 0.5 * bowl


_H_A = [
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
]
_H_P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]
_H_ALPHA = [1.0, 1.2, 3.0, 3.2]


def _hartmann6(x: list[float]) -> float:
    """Hartmann-6 on [0, 1]^6, shifted so that its minimum (-3.32237) is 0."""
    s = 0.0
    for alpha, a, p in zip(_H_ALPHA, _H_A, _H_P, strict=True):
        s -= alpha * math.exp(-sum(ai * (xi - pi) ** 2 for ai, xi, pi in zip(a, x, p, strict=True)))
    return (s + 3.32237) / 3.32237


@dataclass(frozen=True)
class Problem:
    name: str
    final: Callable[[list[float]], float]  # lower is better, 0 at the optimum
    worst: float  # for the 0..1 regret scale

    def value(self, p: Params, epoch: int, noise_seed: int) -> float:
        """The reported loss after ``epoch`` epochs: falls from 1 + final towards final, with a
        speed set by lr and depth (fast learners plateau early, so curves cross), plus noise."""
        x = _unit(p)
        fin = self.final(x)
        tau = 0.6 + 9.0 * (1 - x[2]) * (0.3 + 0.7 * x[4])  # low lr, deep: slow but not worse
        noise = random.Random(f"{noise_seed}:{p!r}:{epoch}").gauss(0, 0.004)
        return fin + (1.0 + 0.5 * x[0]) * math.exp(-epoch / tau) + noise

    def regret(self, p: Params) -> float:
        return self.final(_unit(p)) / self.worst


OPTUNA = {
    "optuna tpe+hyperband": ("tpe", "hyperband"),
    "optuna tpe+sha": ("tpe", "sha"),
    "optuna random+sha": ("random", "sha"),
}
PROBLEMS = [Problem("branin-mixed", _branin, 1.6), Problem("hartmann6-mixed", _hartmann6, 1.0)]


def by_name(name: str) -> Problem:
    return next(p for p in PROBLEMS if p.name == name)


RUNGS = frozenset(MAX_R // ETA**k for k in range(4))  # 1, 3, 9, 27: where results count


def answer_regret(
    problem: Problem,
    events: list[tuple[float, int, int, float]],
    params: dict[Any, Params],
    at: float,
) -> float:
    """The regret of a search's answer at ``at`` (epochs or seconds, as the events' first
    field), by one rule for every search (``hpd best``'s): the highest resource reached, then
    the best value there. ``events``: (when, trial, resource, value) in order."""
    best: tuple[int, float] | None = None
    answer = None
    for when, trial, resource, value in events:
        if when > at:
            break
        key = (-resource, value if math.isfinite(value) else math.inf)
        if best is None or key < best:
            best, answer = key, trial
    return 1.0 if answer is None else problem.regret(params[answer])


def suggest(trial: Any) -> Params:
    """SPACE through an Optuna trial's suggest API (the peers' side of the same space)."""
    return {
        "a": trial.suggest_float("a", 0.0, 1.0),
        "b": trial.suggest_float("b", 0.0, 1.0),
        "lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
        "width": trial.suggest_int("width", 8, 512, log=True),
        "depth": trial.suggest_int("depth", 1, 10),
        "opt": trial.suggest_categorical("opt", ["sgd", "adam", "rmsprop", "adagrad"]),
    }


def train(ctx: Any) -> None:
    """The problem as an hpd trial: every epoch sleeps ``BENCH_SLEEP`` and reports ``loss``."""
    problem = by_name(os.environ.get("BENCH_PROBLEM", "hartmann6-mixed"))
    seed = int(os.environ.get("BENCH_SEED", "0"))
    sleep = float(os.environ.get("BENCH_SLEEP", "0"))
    params = dict(ctx.params)
    for epoch in ctx.epochs():
        if sleep:
            time.sleep(sleep)
        ctx.report(epoch, loss=problem.value(params, epoch, seed))
        ctx.checkpoint({"epoch": epoch})
