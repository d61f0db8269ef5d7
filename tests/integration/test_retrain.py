"""`hpd retrain`: the top k of a finished search, trained on full data as a linked experiment.

A real daemon with fake GPUs runs the synthetic search (a deterministic learning curve), so the
retrained value of each configuration is known in closed form and the ranking can be checked
against the trials' own results, computed here without hpd's code.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from examples.synthetic.train import loss
from hpd.client.local import LocalDaemon
from hpd.errors import RemoteError
from tests.conftest import synthetic_spec
from tests.waits import WAIT_S


def _hpd(daemon: LocalDaemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpd", *args, "--state-dir", str(daemon.state)],
        capture_output=True,
        text=True,
        timeout=120,
        env=daemon.env,
        check=False,
    )


def _expected_order(trials: list[dict[str, Any]]) -> list[int]:
    """Trial ids best first: highest rung reached, then lowest loss, then lower id."""
    keyed = []
    for t in trials:
        if t["results"]:
            rung = max(int(r) for r in t["results"])
            keyed.append((-rung, float(t["results"][str(rung)]), t["id"]))
    return [tid for *_, tid in sorted(keyed)]


def test_retrain_trains_the_top_k_on_full_data(daemon: LocalDaemon) -> None:
    spec = synthetic_spec(subset=None)
    with daemon.client() as c:
        search = c.submit(spec)
        assert search.wait(timeout=120)["state"] == "completed"
        trials = search.trials()
    order = _expected_order(trials)
    params = {t["id"]: t["params"] for t in trials}

    out = _hpd(
        daemon, "retrain", str(search.id), "--top", "3", "--epochs", "12", "--wait", "--json"
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["parent"] == search.id
    assert r["state"] == "completed"
    assert (r["epochs"], r["metric"], r["mode"]) == (12, "loss", "min")
    assert [x["parent_trial"] for x in r["rows"]] == order[:3]
    for rank, row in enumerate(r["rows"], 1):
        assert row["rank"] == rank
        assert row["params"] == params[row["parent_trial"]]
        assert row["state"] == "completed"
        assert row["epoch"] == 12
        # resumed from nothing: the curve's own value at epoch 12, exactly
        assert row["value"] == loss(row["params"]["lr"], row["params"]["momentum"], 12)
        assert row["metrics"]["loss"] == row["value"]
        assert row["run_s"] >= 0

    with daemon.client() as c:
        child = c.experiment(r["id"])
        status = child.status()
        assert status["parent"] == search.id
        assert status["name"] == "synthetic-retrain"
        retrained = child.trials()
        assert sorted(t["params"]["lr"] for t in retrained) == sorted(
            params[t]["lr"] for t in order[:3]
        )
        # one segment each, straight to 12 epochs: no early stopping in a retraining
        assert all(t["attempts"] == 1 and t["results"].keys() == {"0"} for t in retrained)
        best = child.best()
        assert best is not None
        assert best["value"] == min(row["value"] for row in r["rows"])
        spec_back = [e for e in child.events() if e["type"] == "retrain_planned"]
        assert spec_back[0]["parent"] == search.id

    human = _hpd(daemon, "retrained", str(r["id"]))
    assert human.returncode == 0, human.stderr
    assert "top 3 of experiment" in human.stdout


def test_retrain_refusals_name_the_problem_and_change_nothing(daemon: LocalDaemon) -> None:
    slow = synthetic_spec(
        searcher={"max_trials": 4, "min_resource": 1, "max_resource": 3},
        resources={"max_concurrent": 1},  # leaves slots free for the other search
        space={
            "lr": {"type": "choice", "values": [0.01]},
            "sleep": {"type": "choice", "values": [5.0]},
        },
    )
    with daemon.client() as c:
        running = c.submit(slow)
        done = c.submit(synthetic_spec(searcher={"max_trials": 3, "max_resource": 3}))
        done.wait(timeout=WAIT_S)
        before = len(c.experiments())

    cases = [
        ((str(running.id), "--epochs", "3"), 1, "running; retrain it once it has finished"),
        ((str(done.id), "--epochs", "3", "--top", "0"), 1, "top: must be an integer in 1..10000"),
        ((str(done.id), "--epochs", "0"), 1, "epochs: must be an integer in 1.."),
        (("999", "--epochs", "3"), 1, "no experiment 999"),
        ((str(done.id), "--epochs", "3", "--metric", "bad metric"), 2, "metric:"),
    ]
    for args, code, message in cases:
        out = _hpd(daemon, "retrain", *args)
        assert out.returncode == code, (args, out.stdout, out.stderr)
        assert message in out.stderr, (args, out.stderr)

    with daemon.client() as c:
        assert len(c.experiments()) == before
        with pytest.raises(RemoteError, match="not a retraining"):
            c.experiment(done.id).retrained()
        running.cancel()


def test_listed_configs_run_first_then_the_sampler(daemon: LocalDaemon) -> None:
    configs = [{"lr": 0.01, "momentum": 0.7}, {"lr": 0.5, "momentum": 0.1}]
    with daemon.client() as c:
        fixed = c.submit(
            synthetic_spec(searcher={"sampler": "fixed", "max_trials": 10}, configs=configs)
        )
        seeded = c.submit(synthetic_spec(searcher={"max_trials": 5}, configs=configs))
        assert fixed.wait(timeout=WAIT_S)["state"] == "completed"
        assert seeded.wait(timeout=WAIT_S)["state"] == "completed"
        fixed_trials = sorted(fixed.trials(), key=lambda t: t["index"])
        seeded_trials = sorted(seeded.trials(), key=lambda t: t["index"])
    # "fixed": exactly the listed configurations, even though max_trials allows more
    assert [t["params"] for t in fixed_trials] == configs
    assert [t["params"] for t in seeded_trials[:2]] == configs
    assert len(seeded_trials) == 5
    assert all(math.isfinite(t["params"]["lr"]) for t in seeded_trials[2:])
