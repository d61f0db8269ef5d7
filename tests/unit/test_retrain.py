"""hpd.core.retrain: the ranking of a finished search and the spec of its retraining (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hpd.core.records import TrialRow
from hpd.core.retrain import Pick, rank, retrain_spec, rows, validate_request
from hpd.core.spec import parse_spec, spec_to_dict
from hpd.errors import HpdError, SpecError

PARENT = spec_to_dict(
    parse_spec(
        {
            "name": "search",
            "metric": "val_acc",
            "mode": "max",
            "entrypoint": "m:f",
            "workdir": "/w",
            "searcher": {"name": "asha", "max_trials": 9, "min_resource": 1, "max_resource": 9},
            "space": {"lr": {"type": "loguniform", "low": 1e-4, "high": 1.0}},
            "subset": {"strategy": "gradmatch", "fraction": 0.125, "per_batch": True},
            "resources": {"max_concurrent": 3},
        }
    )
)


def trial(tid: int, lr: float = 0.1, idx: int | None = None) -> TrialRow:
    return TrialRow(
        tid, 1, tid if idx is None else idx, 0, json.dumps({"lr": lr}), "completed",
        0, 1, 1, None, 0, 1, 0, None, None, None, 0.0,
    )  # fmt: skip


def test_rank_is_highest_rung_then_value_then_id() -> None:
    trials = [trial(i) for i in range(1, 7)]
    results: dict[int, dict[int, float]] = {
        1: {0: 0.9},  # best value, but only rung 0
        2: {0: 0.5, 1: 0.6},
        3: {0: 0.7, 1: 0.8},
        4: {0: 0.7, 1: 0.8},  # tie with 3: lower id first
        5: {0: float("nan")},  # no finite result: never picked
        6: {0: 0.6, 1: float("inf")},  # its highest finite rung is 0
    }
    assert [p.trial for p in rank("max", trials, results)] == [3, 4, 2, 1, 6]
    assert [p.trial for p in rank("min", trials, results)] == [2, 3, 4, 6, 1]
    assert rank("max", trials, results)[0] == Pick(3, {"lr": 0.1}, 1, 0.8)


def test_retrain_spec_runs_each_config_straight_to_epochs_on_full_data() -> None:
    picks = [Pick(3, {"lr": 0.5}, 2, 0.9), Pick(1, {"lr": 0.001}, 2, 0.8)]
    parsed = retrain_spec(PARENT, picks, epochs=30, metric="test_acc")
    assert parsed.name == "search-retrain"
    assert (parsed.metric, parsed.mode) == ("test_acc", "max")
    s = parsed.searcher
    assert (s.name, s.sampler, s.max_trials, s.min_resource, s.max_resource) == (
        "random", "fixed", 2, 30, 30,
    )  # fmt: skip
    assert parsed.configs == ((("lr", 0.5),), (("lr", 0.001),))
    assert (parsed.subset.strategy, parsed.subset.fraction) == ("none", 1.0)
    # everything else carries over: the program, the space, the resources, the seed
    assert (parsed.entrypoint, parsed.workdir, parsed.resources.max_concurrent) == ("m:f", "/w", 3)
    assert parsed.space == parse_spec(PARENT).space


def test_retrain_spec_keeps_long_names_within_bounds() -> None:
    spec = retrain_spec({**PARENT, "name": "x" * 128}, [Pick(1, {"lr": 0.1}, 0, 1.0)], epochs=1)
    assert len(spec.name) == 128 and spec.name.endswith("-retrain")


def test_retrain_spec_errors_name_the_field() -> None:
    with pytest.raises(HpdError, match="no finite result"):
        retrain_spec(PARENT, [], epochs=3)
    with pytest.raises(SpecError) as e:
        retrain_spec(PARENT, [Pick(1, {"lr": 0.1}, 0, 1.0)], epochs=3, mode="best")
    assert e.value.errors[0].startswith("mode:")


@pytest.mark.parametrize(
    ("top", "epochs", "message"),
    [
        (0, 1, "top: must be an integer in 1..10000, got 0"),
        (True, 1, "top: must be an integer in 1..10000, got True"),
        (1, "3", "epochs: must be an integer in 1..1000000000, got '3'"),
        (1, 0, "epochs: must be an integer in 1..1000000000, got 0"),
    ],
)
def test_validate_request(top: Any, epochs: Any, message: str) -> None:
    with pytest.raises(HpdError) as e:
        validate_request(top, epochs)
    assert str(e.value) == message


def test_rows_pair_each_pick_with_its_retraining_by_index() -> None:
    picks = [
        {"trial": 7, "rung": 2, "value": 0.9, "params": {"lr": 0.5}},
        {"trial": 4, "rung": 2, "value": 0.8, "params": {"lr": 0.1}},
    ]
    retrained = [trial(20, 0.5, idx=0)]  # the second is not created yet
    out = rows(
        retrained, picks, {20: {0: 0.95}}, {20: {"val_acc": 0.95, "test_acc": 0.94}}, {20: 12.5}
    )
    assert out[0] | {} == {
        "rank": 1, "parent_trial": 7, "search_value": 0.9, "search_rung": 2,
        "params": {"lr": 0.5}, "trial": 20, "state": "completed", "epoch": 1,
        "value": 0.95, "metrics": {"val_acc": 0.95, "test_acc": 0.94}, "run_s": 12.5,
    }  # fmt: skip
    assert (out[1]["trial"], out[1]["state"], out[1]["value"]) == (None, "pending", None)
