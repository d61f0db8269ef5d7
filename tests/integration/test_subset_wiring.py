"""A trial's subset loader, configured by the spec's [subset], reports its timings to the daemon."""

from __future__ import annotations

from typing import Any

import pytest

from hpd.client.local import LocalDaemon
from tests.conftest import synthetic_spec

pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("strategy", "fraction"), [("none", 1.0), ("random", 0.125), ("gradmatch", 0.125)]
)
def test_subset_timings_reach_trials_json(
    daemon: LocalDaemon, strategy: str, fraction: float
) -> None:
    """`hpd trials --json` shows each trial's strategy, fraction, selection and epoch seconds."""
    spec: dict[str, Any] = synthetic_spec(
        metric="val_acc",
        mode="max",
        entrypoint="examples.subset_trial.train:train",
        searcher={"max_trials": 3, "min_resource": 1, "max_resource": 3},
        space={"lr": {"type": "loguniform", "low": 0.01, "high": 0.1}},
        resources={"gpus_per_trial": 0, "max_concurrent": 2},
        subset={"strategy": strategy, "fraction": fraction, "select_every": 2},
    )
    spec["space"].pop("momentum")
    with daemon.client() as c:
        exp = c.submit(spec)
        assert exp.wait(timeout=180)["state"] == "completed"
        trials = exp.trials()
    for t in trials:
        sub = t["subset"]
        assert sub is not None, t
        assert sub["strategy"] == strategy
        assert sub["fraction"] == fraction
        assert sub["subset_size"] == round(3200 * fraction)
        assert sub["epoch_s"] > 0
        assert sub["selection_total_s"] >= sub["selection_s"] >= 0
    assert max(t["results"]["0"] for t in trials) > 0.5  # it learns, even on 12.5%
