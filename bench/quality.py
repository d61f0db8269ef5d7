"""Search quality at an equal epoch budget: hpd random, hpd tpe, and Optuna's samplers with
its successive-halving pruners, side by side in one process, on multi-fidelity test problems.

Each problem maps a classic test function onto a mixed space of six hyperparameters (floats,
a log float, integers with and without log, a choice) and gives every configuration a learning
curve that falls towards its final value at a speed of its own, so that curves cross: the
early ranking differs from the final one. A search's answer is the configuration it would
return (hpd: highest rung reached, then value, as ``hpd best``; Optuna: ``best_trial`` among
trials run to the end), and its regret is that configuration's true final value minus the
problem's optimum, on a 0..1 scale (0 = the optimum, 1 = the worst value).

hpd's side runs the daemon's decision code (``Experiment``, the ladder, the samplers and the
tpe model exactly as the daemon calls them) on one slot with zero-cost epochs, so only what is
chosen is measured, not how fast. Every search runs until it has spent the largest budget of
epochs, and is read at each budget by one rule: the trial at the highest resource reached so
far, best value there (``hpd best``'s rule; for Optuna, its reports at the rung epochs).
Run: ``python -m bench.quality [--seeds 10] [--budgets 1000 2000]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import emit, machine, table
from bench.peers.problems import (
    ETA,
    MAX_R,
    PROBLEMS,
    RUNGS,
    SPACE,
    Params,
    Problem,
    answer_regret,
    suggest,
)
from hpd.core import asha
from hpd.core.experiment import Experiment, Trial
from hpd.core.space import results_of
from hpd.core.spec import parse_spec

# ---------------------------------------------------------------------------- the searches


@dataclass
class Log:
    """A search's rung results in the order they came: (epochs spent by then, trial,
    resource, value), and each trial's parameters."""

    events: list[tuple[int, int, int, float]] = field(default_factory=list)
    params: dict[int, Params] = field(default_factory=dict)

    def regret_at(self, problem: Problem, budget: int) -> float:
        """The regret of the answer after ``budget`` epochs, by one rule for every search (as
        ``hpd best`` ranks): the highest resource reached, then the best value there."""
        events = [(float(e[0]), e[1], e[2], e[3]) for e in self.events]
        return answer_regret(problem, events, self.params, budget)


def _spec(sampler: str, seed: int, trials: int) -> Any:
    return parse_spec(
        {
            "name": "quality",
            "metric": "loss",
            "mode": "min",
            "seed": seed,
            "entrypoint": "bench.quality:none",
            "searcher": {
                "name": "asha",
                "max_trials": trials,
                "min_resource": 1,
                "max_resource": MAX_R,
                "eta": ETA,
                "sampler": sampler,
            },
            "space": SPACE,
        }
    )


def _hpd_params(exp: Experiment, index: int) -> Params:
    """The configuration the daemon would give trial ``index`` (``Daemon._propose``)."""
    if not exp.wants_model(index):
        return exp.random_proposal(index).params
    obs = exp.observations()
    model = exp.model()
    if not model.ready(obs):
        return exp.random_proposal(index, results_of(obs)).params
    return dict(model.propose(index, obs).params)


def hpd_search(problem: Problem, sampler: str, seed: int, budget: int) -> Log:
    """One slot, the daemon's decisions, until ``budget`` epochs are spent."""
    exp = Experiment.new(1, _spec(sampler, seed, 100_000), "running", 0.0)
    log, spent = Log(), 0
    reached: dict[int, int] = {}  # trial -> epochs trained
    while spent < budget:
        step = next_segment(exp, _hpd_params)
        if step is None:
            break
        idx, rung, resource = step
        log.params.setdefault(idx, exp.trials[idx].params)
        spent += resource - reached.get(idx, 0)
        reached[idx] = resource
        value = problem.value(exp.trials[idx].params, resource, seed)
        exp.ladder.apply(asha.ResultRecorded(idx, rung, value))
        log.events.append((spent, idx, resource, value))
    return log


def next_segment(
    exp: Experiment, params_for: Callable[[Experiment, int], Params]
) -> tuple[int, int, int] | None:
    """The ladder's next decision, applied as the daemon applies it (a new trial gets
    ``params_for(exp, index)``): (trial, rung, resource) of the segment to run, or None."""
    d = exp.ladder.decide()
    if isinstance(d, asha.StartNew):
        params = params_for(exp, d.trial)
        exp.trials[d.trial] = Trial(d.trial, 1, d.trial, d.bracket, params, "running", 0, 0)
        exp.ladder.apply(asha.TrialCreated(d.trial, d.bracket))
        return d.trial, d.rung, d.resource
    if isinstance(d, asha.Promote):
        exp.ladder.apply(asha.TrialPromoted(d.trial, d.from_rung, d.to_rung))
        return d.trial, d.to_rung, d.resource
    return None


def optuna_search(problem: Problem, sampler: str, pruner: str, seed: int, budget: int) -> Log:
    """Optuna's ask-and-tell with its pruner, one epoch reported at a time, until ``budget``."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    pruners = {
        "sha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=MAX_R, reduction_factor=ETA
        ),
    }
    study = optuna.create_study(sampler=samplers[sampler](), pruner=pruners[pruner]())
    log, spent = Log(), 0
    while spent < budget:
        trial = study.ask()
        p = suggest(trial)
        log.params[trial.number] = p
        for epoch in range(1, MAX_R + 1):
            spent += 1
            value = problem.value(p, epoch, seed)
            trial.report(value, epoch)
            if epoch in RUNGS:
                log.events.append((spent, trial.number, epoch, value))
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, value)
    return log


# ---------------------------------------------------------------------------- the table

SEARCHES: dict[str, Callable[[Problem, int, int], Log]] = {
    "hpd random": lambda pr, seed, b: hpd_search(pr, "random", seed, b),
    "hpd tpe": lambda pr, seed, b: hpd_search(pr, "tpe", seed, b),
    "optuna tpe+hyperband": lambda pr, seed, b: optuna_search(pr, "tpe", "hyperband", seed, b),
    "optuna tpe+sha": lambda pr, seed, b: optuna_search(pr, "tpe", "sha", seed, b),
    "optuna random+sha": lambda pr, seed, b: optuna_search(pr, "random", "sha", seed, b),
}


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budgets", type=int, nargs="+", default=[1000, 2000], help="epochs")
    ap.add_argument("--plot", default="bench/results/quality.png")
    args = ap.parse_args()
    budgets = sorted(args.budgets)
    # regrets[problem][search][budget] -> one per seed
    regrets: dict[str, dict[str, dict[int, list[float]]]] = {}
    trials: dict[str, list[int]] = {m: [] for m in SEARCHES}
    t0 = time.monotonic()
    for problem in PROBLEMS:
        r = regrets[problem.name] = {m: {b: [] for b in budgets} for m in SEARCHES}
        for seed in range(args.seeds):
            line = []
            for m, search in SEARCHES.items():
                log = search(problem, seed, budgets[-1])
                trials[m].append(len(log.params))
                for b in budgets:
                    r[m][b].append(log.regret_at(problem, b))
                line.append(f"{m} {r[m][budgets[0]][-1]:.4f}/{r[m][budgets[-1]][-1]:.4f}")
            print(
                f"{problem.name} seed {seed} (regret at {budgets}): " + ", ".join(line), flush=True
            )
    rows, summary = [], {}
    for name, r in regrets.items():
        summary[name] = {}
        for b in budgets:
            med = {m: statistics.median(r[m][b]) for m in SEARCHES}
            for m in SEARCHES:
                q1, q2, q3 = quartiles(r[m][b])
                rows.append([name, b, m, q2, q1, q3])
            best_optuna = min(med["optuna tpe+sha"], med["optuna tpe+hyperband"])
            summary[name][str(b)] = {
                "median": med,
                "tpe_vs_optuna_tpe": med["hpd tpe"] / best_optuna if best_optuna else math.inf,
                "tpe_vs_random": med["hpd tpe"] / med["hpd random"]
                if med["hpd random"]
                else math.inf,
            }
    print()
    print(table(["problem", "epochs", "search", "median regret", "q1", "q3"], rows))
    for name, by_budget in summary.items():
        for b, s in by_budget.items():
            print(
                f"{name} at {b} epochs: hpd tpe / best Optuna TPE = {s['tpe_vs_optuna_tpe']:.2f}"
                f" (goal <= 0.8), hpd tpe / hpd random = {s['tpe_vs_random']:.2f} (goal <= 0.5)"
            )
    print(
        f"trials per search in {budgets[-1]} epochs (median): "
        + ", ".join(f"{m} {statistics.median(n):.0f}" for m, n in trials.items())
    )
    _plot(regrets, budgets, args.plot)
    emit(
        {
            "bench": "quality",
            "seeds": args.seeds,
            "budgets": budgets,
            "summary": summary,
            "trials": {m: statistics.median(n) for m, n in trials.items()},
            "seconds": round(time.monotonic() - t0, 1),
            "machine": machine(),
        }
    )


def _plot(
    regrets: dict[str, dict[str, dict[int, list[float]]]], budgets: list[int], path: str
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot)")
        return
    fig, axes = plt.subplots(1, len(regrets), figsize=(6.5 * len(regrets), 4.4))
    for ax, (name, r) in zip(axes, regrets.items(), strict=True):
        for m, by_budget in r.items():
            med = [statistics.median(by_budget[b]) for b in budgets]
            ax.plot(
                budgets, med, marker="o", label=m, linestyle="-" if m.startswith("hpd") else "--"
            )
        ax.set_yscale("log")
        ax.set_xlabel("epochs spent")
        ax.set_ylabel("median regret (lower is better)")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
