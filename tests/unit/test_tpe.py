"""The tpe sampler: the space and the ladder's trials mapped onto Optuna's, and proposals that
are a pure function of (spec, index, observations)."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("optuna")

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpd.core.space import Observation, RandomSampler
from hpd.core.spec import parse_spec
from hpd.core.tpe import TpeModel, _Codec, _frozen, distributions, proposal_seed

SPACE: dict[str, Any] = {
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
    "momentum": {"type": "uniform", "low": 0.0, "high": 1.0},
    "width": {"type": "int", "low": 8, "high": 512, "log": True},
    "depth": {"type": "int", "low": 1, "high": 6},
    "act": {"type": "choice", "values": ["relu", True, 1, 2.5]},
}


def _spec(mode: str = "max", space: dict[str, Any] | None = None, **options: Any) -> Any:
    return parse_spec(
        {
            "name": "t",
            "metric": "m",
            "mode": mode,
            "seed": 3,
            "entrypoint": "a:b",
            "searcher": {"sampler": "tpe", "sampler_options": options},
            "space": space or SPACE,
        }
    )


def _objective(p: dict[str, Any]) -> float:
    return -((math.log10(p["lr"]) + 2) ** 2) - (p["momentum"] - 0.3) ** 2 + (p["act"] == "relu")


def _history(spec: Any, n: int, seed: int = 0) -> list[Observation]:
    """n trials of a random search on ``_objective``: most paused at rung 0, some complete."""
    rng, rs = random.Random(seed), RandomSampler(spec)
    out = []
    for i in range(n):
        p = rs.params_for(i)
        v = _objective(p)
        state = rng.choice(["paused"] * 6 + ["completed", "running", "failed"])
        values: tuple[tuple[int, float], ...] = ((1, v - 1),)
        if state == "completed":
            values = ((1, v - 1), (3, v - 0.5), (9, v))
        elif state == "running":
            values = ()
        out.append(Observation(i, p, state, values))  # type: ignore[arg-type]
    return out


def test_distributions_map_every_type_exactly() -> None:
    d = distributions(_spec().space)
    assert d["lr"] == FloatDistribution(1e-4, 1.0, log=True)
    assert d["momentum"] == FloatDistribution(0.0, 1.0)
    assert d["width"] == IntDistribution(8, 512, log=True)
    assert d["depth"] == IntDistribution(1, 6)
    assert d["act"] == CategoricalDistribution((0, 1, 2, 3))  # positions: True, 1 stay apart


def test_codec_round_trips_and_keeps_each_choice_type() -> None:
    codec = _Codec(_spec().space)
    for value in ["relu", True, 1, 2.5]:
        p = {"lr": 0.01, "momentum": 0.5, "width": 64, "depth": 2, "act": value}
        internal = codec.to_optuna(p)
        assert internal is not None
        back = codec.from_optuna(internal)
        assert back == p and type(back["act"]) is type(value)
    # a value outside the space is never modelled (and never raises)
    assert codec.to_optuna({"lr": 2.0, "momentum": 0.5, "width": 64, "depth": 2, "act": 1}) is None
    assert codec.to_optuna({"lr": 0.1, "momentum": 0.5, "width": 64, "depth": 2, "act": 7}) is None
    assert codec.to_optuna({"lr": 0.1}) is None


def test_ladder_states_map_as_optunas_pruners_leave_trials() -> None:
    spec = _spec()
    dists = distributions(spec.space)
    p = RandomSampler(spec).params_for(0)
    internal = _Codec(spec.space).to_optuna(p)
    assert internal is not None

    def frozen(state: str, values: tuple[tuple[int, float], ...]) -> Any:
        return _frozen(Observation(0, p, state, values), internal, dists)  # type: ignore[arg-type]

    done = frozen("completed", ((1, 0.1), (3, 0.2), (9, 0.3)))
    assert done.state == TrialState.COMPLETE and done.value == 0.3
    assert done.intermediate_values == {1: 0.1, 3: 0.2, 9: 0.3}
    paused = frozen("paused", ((1, 0.1), (3, 0.2)))
    assert paused.state == TrialState.PRUNED and paused.intermediate_values == {1: 0.1, 3: 0.2}
    assert frozen("failed", ((1, 0.1),)).state == TrialState.PRUNED  # its result still counts
    assert frozen("failed", ()).state == TrialState.FAIL
    assert frozen("running", ((1, 0.1),)).state == TrialState.RUNNING
    # non-finite results are NaN to Optuna (ranked last); a non-finite top result is no COMPLETE
    inf_top = frozen("completed", ((1, 0.1), (3, 0.2), (9, math.inf)))
    assert inf_top.state == TrialState.PRUNED and math.isnan(inf_top.intermediate_values[9])
    assert math.isnan(frozen("paused", ((1, -math.inf),)).intermediate_values[1])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**40), st.integers(10, 60), st.sampled_from(["max", "min"]))
def test_proposals_are_pure_functions_of_history(seed: int, n: int, mode: str) -> None:
    spec = _spec(mode)
    history = _history(spec, n, seed)
    a = TpeModel(spec).propose(n, history)
    model = TpeModel(spec)
    model.propose(n + 1, [*history, Observation(n, history[0].params, "running", ())])
    b = model.propose(n, history)  # a used model, its cache warm: the same proposal
    assert a == b
    for p in spec.space:
        v = a.params[p.name]
        if p.type == "choice":
            assert any(type(v) is type(c) and v == c for c in p.values or ())
        else:
            assert p.low is not None and p.high is not None
            assert p.low <= v <= p.high and isinstance(v, int if p.type == "int" else float)


def test_proposal_depends_on_results_and_seed() -> None:
    spec = _spec()
    history = _history(spec, 40)
    base = TpeModel(spec).propose(40, history)
    flipped = [
        Observation(o.index, o.params, o.state, tuple((r, -v) for r, v in o.values))
        for o in history
    ]
    assert TpeModel(spec).propose(40, flipped).params != base.params
    more = [*history, Observation(40, history[0].params, "running", ())]
    assert TpeModel(spec).propose(41, more).params != base.params
    assert proposal_seed(3, 40) != proposal_seed(3, 41) != proposal_seed(4, 40)


def test_model_finds_the_good_region_better_than_random() -> None:
    """200 sequential proposals on a smooth objective: TPE's best beats random's best."""
    spec = _spec(
        space={
            "x": {"type": "uniform", "low": -5, "high": 5},
            "y": {"type": "uniform", "low": -5, "high": 5},
        }
    )

    def f(p: dict[str, Any]) -> float:
        return -((p["x"] - 1.3) ** 2) - (p["y"] + 2.1) ** 2

    model, rs, obs = TpeModel(spec), RandomSampler(spec), []
    for i in range(120):
        p = model.propose(i, obs).params if model.ready(obs) else rs.params_for(i)
        obs.append(Observation(i, p, "completed", ((9, f(p)),)))
    tpe_best = max(o.values[-1][1] for o in obs)
    random_best = max(f(rs.params_for(i)) for i in range(120))
    assert tpe_best > random_best
    assert tpe_best > -0.05


def test_running_trials_are_lies_not_repeats() -> None:
    """With constant_liar, a proposal made while another runs lands elsewhere."""
    spec = _spec(space={"x": {"type": "uniform", "low": 0, "high": 1}}, n_startup=5)
    obs = [
        Observation(i, {"x": i / 20}, "completed", ((9, -abs(i / 20 - 0.5)),)) for i in range(20)
    ]
    first = TpeModel(spec).propose(20, obs).params
    second = TpeModel(spec).propose(21, [*obs, Observation(20, first, "running", ())]).params
    assert second != first


def test_ready_counts_trials_with_a_result() -> None:
    spec = _spec(n_startup=3)
    model = TpeModel(spec)
    p = RandomSampler(spec).params_for(0)
    running = [Observation(i, p, "running", ()) for i in range(5)]
    assert not model.ready(running)
    done = [Observation(i, p, "paused", ((1, 0.5),)) for i in range(3)]
    assert model.ready(done) and not model.ready(done[:2])


def test_observations_must_be_the_trials_before_index() -> None:
    spec = _spec()
    history = _history(spec, 12)
    with pytest.raises(ValueError, match=r"0\.\.index-1"):
        TpeModel(spec).propose(13, history)
    with pytest.raises(ValueError, match=r"0\.\.index-1"):
        TpeModel(spec).propose(11, history[1:])


def test_info_says_what_the_model_used() -> None:
    spec = _spec()
    history = _history(spec, 30, seed=1)
    info = TpeModel(spec).propose(30, history).info
    results = [o for o in history if o.values and o.state != "running"]
    assert info["sampler"] == "tpe"
    assert info["observations"] == len(results)
    assert info["running"] == sum(o.state == "running" for o in history)
    assert info["completed"] == sum(o.state == "completed" for o in history)
    assert sum(info["by_resource"].values()) == len(results)
    assert "tpe from" in info["summary"]


def test_import_hpd_does_not_import_optuna() -> None:
    code = (
        "import sys, hpd, hpd.client, hpd.cli, hpd.daemon, hpd.core.space, hpd.core.experiment;"
        "print('optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_experiment_observations_follow_the_ladder() -> None:
    """The daemon's snapshot (cached per trial) changes exactly when a trial's progress does."""
    from hpd.core import asha
    from hpd.core.experiment import Experiment, Trial

    spec = _spec(mode="min")
    exp = Experiment.new(1, spec, "running", 0.0)
    rs = RandomSampler(spec)
    for i in range(3):
        d = exp.ladder.decide()
        assert isinstance(d, asha.StartNew)
        exp.trials[i] = Trial(i, 1, i, d.bracket, rs.params_for(i), "running", 0, 0)
        exp.ladder.apply(asha.TrialCreated(i, d.bracket))
    first = exp.observations()
    assert [o.state for o in first] == ["running"] * 3 and all(o.values == () for o in first)
    exp.ladder.apply(asha.ResultRecorded(1, 0, 0.25))
    second = exp.observations()
    assert second[0] is first[0] and second[2] is first[2]  # unchanged: the cached object
    level = exp.ladder.resource_of(1, 0)
    assert second[1].state == "paused" and second[1].values == ((level, 0.25),)
    exp.ladder.apply(asha.TrialFailed(2))
    assert exp.observations()[2].state == "failed"
