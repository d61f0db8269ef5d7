"""hpd.core.space: seeded random sampling (determinism, order independence, bounds) and the grid."""

from __future__ import annotations

import copy
import json
import math
import random
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpd.core.space import GridSampler, Params, RandomSampler, make_sampler
from hpd.core.spec import ParamSpec, Spec, parse_spec

BASE: dict[str, Any] = {
    "name": "s",
    "metric": "val_acc",
    "mode": "max",
    "seed": 0,
    "entrypoint": "examples.cifar10.train:train",
    "space": {
        "lr": {"type": "loguniform", "low": 1e-5, "high": 0.5},
        "momentum": {"type": "uniform", "low": 0.05, "high": 0.95},
        "step_size": {"type": "int", "low": 1, "high": 50},
        "optimizer": {"type": "choice", "values": ["sgd", "rmsprop"]},
    },
}


def spec_with(space: dict[str, Any] | None = None, **changes: Any) -> Spec:
    data = copy.deepcopy(BASE)
    if space is not None:
        data["space"] = space
    for key, value in changes.items():
        if key in ("sampler",):
            data.setdefault("searcher", {})[key] = value
        else:
            data[key] = value
    return parse_spec(data)


def in_bounds(p: ParamSpec, v: object) -> bool:
    if p.type == "choice":
        return v in (p.values or ()) and any(type(v) is type(c) for c in p.values or ())
    assert p.low is not None
    assert p.high is not None
    if p.type == "int":
        return type(v) is int and p.low <= v <= p.high
    return type(v) is float and p.low <= v <= p.high


# ------------------------------------------------------------------ random sampler


def test_make_sampler_picks_by_name() -> None:
    assert isinstance(make_sampler(spec_with()), RandomSampler)
    assert isinstance(make_sampler(spec_with(sampler="grid")), GridSampler)


def test_golden_values_are_stable_across_processes_and_versions() -> None:
    # string seeds go through SHA-512 in random.Random: no hash() salt, no platform dependence
    s = make_sampler(spec_with())
    p0, p1 = s.params_for(0), s.params_for(1)
    assert p0 == {
        "lr": pytest.approx(0.3296575156890967, rel=1e-12),
        "momentum": pytest.approx(0.37123105209468943, rel=1e-12),
        "step_size": 16,
        "optimizer": "sgd",
    }
    assert p1 == {
        "lr": pytest.approx(6.359661995362089e-05, rel=1e-12),
        "momentum": pytest.approx(0.2649658218501741, rel=1e-12),
        "step_size": 14,
        "optimizer": "sgd",
    }


def test_same_result_in_a_fresh_process_with_another_hash_seed() -> None:
    code = (
        "import json, sys; from hpd.core.spec import parse_spec; from hpd.core.space import make_sampler;"
        "s = make_sampler(parse_spec(json.loads(sys.argv[1])));"
        "print(json.dumps([s.params_for(i) for i in range(5)]))"
    )
    here = make_sampler(spec_with())
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(BASE)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert json.loads(out.stdout) == [here.params_for(i) for i in range(5)]


def test_determinism_per_seed_and_index() -> None:
    a, b = make_sampler(spec_with(seed=7)), make_sampler(spec_with(seed=7))
    assert [a.params_for(i) for i in range(50)] == [b.params_for(i) for i in range(50)]
    other = make_sampler(spec_with(seed=8))
    assert [a.params_for(i) for i in range(50)] != [other.params_for(i) for i in range(50)]


def test_independent_of_call_order_and_repetition() -> None:
    s = make_sampler(spec_with(seed=3))
    forward = {i: s.params_for(i) for i in range(100)}
    order = list(range(100)) * 2
    random.Random(1).shuffle(order)
    fresh = make_sampler(spec_with(seed=3))
    for i in order:
        assert fresh.params_for(i) == forward[i]


def test_space_order_and_other_params_do_not_change_a_params_values() -> None:
    # the daemon's store may sort JSON keys; adding a parameter must not reshuffle the others
    reordered = dict(reversed(list(BASE["space"].items())))
    extra = {**BASE["space"], "wd": {"type": "uniform", "low": 0, "high": 1}}
    a = make_sampler(spec_with())
    b = make_sampler(spec_with(reordered))
    c = make_sampler(spec_with(extra))
    for i in range(20):
        pa, pb, pc = a.params_for(i), b.params_for(i), c.params_for(i)
        assert pa is not None
        assert pb is not None
        assert pc is not None
        assert pa == pb
        assert list(pb) == list(reordered)
        assert {k: pc[k] for k in pa} == pa


def test_indices_give_different_configs() -> None:
    s = make_sampler(spec_with())
    configs = [s.params_for(i) for i in range(200)]
    assert len({c["momentum"] for c in configs if c}) == 200


def test_params_follow_spec_order_and_are_fresh_dicts() -> None:
    s = make_sampler(spec_with())
    p = s.params_for(0)
    assert p is not None
    assert list(p) == ["lr", "momentum", "step_size", "optimizer"]
    p["lr"] = "changed"
    assert s.params_for(0) != p


def test_huge_index_and_seed_are_fine() -> None:
    s = make_sampler(spec_with(seed=2**63 - 1))
    assert s.params_for(10**12) is not None


@pytest.mark.parametrize("bad", [-1, True, 1.0])
def test_bad_index_is_a_programming_error(bad: Any) -> None:
    with pytest.raises(ValueError, match="trial index"):
        make_sampler(spec_with()).params_for(bad)
    with pytest.raises(ValueError, match="trial index"):
        make_sampler(spec_with(sampler="grid")).params_for(bad)


def test_distributions_roughly() -> None:
    space = {
        "u": {"type": "uniform", "low": 0, "high": 1},
        "lg": {"type": "loguniform", "low": 1e-6, "high": 1},
        "i": {"type": "int", "low": 1, "high": 4},
        "il": {"type": "int", "low": 1, "high": 1000, "log": True},
        "c": {"type": "choice", "values": ["a", "b"]},
    }
    s = make_sampler(spec_with(space))
    draws = [s.params_for(i) for i in range(4000)]
    us = [float(d["u"]) for d in draws if d]
    assert 0.47 < sum(us) / len(us) < 0.53
    # log-uniform: log10 is uniform on [-6, 0]
    logs = [math.log10(float(d["lg"])) for d in draws if d]
    assert -3.2 < sum(logs) / len(logs) < -2.8
    counts = Counter(d["i"] for d in draws if d)
    assert set(counts) == {1, 2, 3, 4}
    assert min(counts.values()) > 850
    ils = [int(d["il"]) for d in draws if d]
    assert sum(1 for v in ils if v < 32) > 0.4 * len(ils)  # log: about half below sqrt(1000)
    assert sum(1 for v in ils if v >= 32) > 0.4 * len(ils)
    assert Counter(d["c"] for d in draws if d)["a"] > 1800


def test_degenerate_ranges() -> None:
    space = {
        "i": {"type": "int", "low": 5, "high": 5},
        "il": {"type": "int", "low": 1, "high": 1, "log": True},
        "c": {"type": "choice", "values": [None is None]},
        "tiny": {"type": "uniform", "low": 0.0, "high": 5e-324},
    }
    s = make_sampler(spec_with(space))
    for i in range(20):
        p = s.params_for(i)
        assert p is not None
        assert (p["i"], p["il"], p["c"]) == (5, 1, True)
        assert p["tiny"] in (0.0, 5e-324)


# hypothesis: any valid parameter, any seed and index -> a value in bounds, of the right type

finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def params(draw: st.DrawFn, name: str) -> dict[str, Any]:
    typ = draw(st.sampled_from(["uniform", "loguniform", "int", "int-log", "choice"]))
    if typ in ("uniform", "loguniform"):
        lo_min = 5e-324 if typ == "loguniform" else -1e300
        a = draw(st.floats(lo_min, 1e300))
        b = draw(st.floats(lo_min, 1e300).filter(lambda b: b != a))
        return {"type": typ, "low": min(a, b), "high": max(a, b), "points": draw(st.integers(2, 9))}
    if typ.startswith("int"):
        log = typ == "int-log"
        lo = draw(st.integers(1 if log else -(10**15), 10**15))
        hi = draw(st.integers(lo, min(lo + draw(st.sampled_from([0, 1, 5, 10**15])), 10**15)))
        return {"type": "int", "low": lo, "high": hi, "log": log}
    scalars = st.one_of(
        st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=5),
        st.integers(-(2**63), 2**63 - 1),
        finite,
        st.booleans(),
    )
    values = draw(
        st.lists(scalars, min_size=1, max_size=8, unique_by=lambda v: (type(v) is bool, v))
    )
    return {"type": "choice", "values": values}


@st.composite
def spaces(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 4))
    return {f"p{i}": draw(params(f"p{i}")) for i in range(n)}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces(), st.integers(0, 2**63 - 1), st.lists(st.integers(0, 2**40), min_size=1, max_size=5))
def test_random_values_lie_within_bounds(space: dict[str, Any], seed: int, idx: list[int]) -> None:
    spec = spec_with(space, seed=seed)
    s = make_sampler(spec)
    for i in idx:
        p = s.params_for(i)
        assert p is not None
        assert list(p) == [q.name for q in spec.space]
        for q in spec.space:
            assert in_bounds(q, p[q.name]), (q, p[q.name])
        assert make_sampler(spec).params_for(i) == p


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces())
def test_grid_values_lie_within_bounds_and_are_unique(space: dict[str, Any]) -> None:
    for q in space.values():
        if q["type"] == "int":
            q["high"] = min(q["high"], q["low"] + 7)
        if q["type"] == "choice":
            q["values"] = q["values"][:4]
    spec = spec_with(space, sampler="grid")
    s = make_sampler(spec)
    assert isinstance(s, GridSampler)
    seen = []
    for i in range(s.size):
        p = s.params_for(i)
        assert p is not None
        for q in spec.space:
            assert in_bounds(q, p[q.name])
        seen.append(tuple((type(v), v) for v in p.values()))
    assert len(set(seen)) == s.size
    assert s.params_for(s.size) is None


# ------------------------------------------------------------------ grid sampler


def grid_all(spec: Spec) -> list[Params]:
    s = make_sampler(spec)
    out = []
    i = 0
    while (p := s.params_for(i)) is not None:
        out.append(p)
        i += 1
    return out


def test_grid_enumerates_the_product_first_parameter_slowest() -> None:
    space = {
        "a": {"type": "choice", "values": ["x", "y"]},
        "b": {"type": "int", "low": 1, "high": 3},
        "c": {"type": "choice", "values": [True, False]},
    }
    got = grid_all(spec_with(space, sampler="grid"))
    expected = [
        {"a": a, "b": b, "c": c} for a in ["x", "y"] for b in [1, 2, 3] for c in [True, False]
    ]
    assert got == expected
    assert [list(p) for p in got] == [["a", "b", "c"]] * 12


def test_grid_exhaustion() -> None:
    s = make_sampler(spec_with({"a": {"type": "int", "low": 0, "high": 2}}, sampler="grid"))
    assert [s.params_for(i) for i in range(5)] == [{"a": 0}, {"a": 1}, {"a": 2}, None, None]
    assert s.params_for(10**30) is None
    assert isinstance(s, GridSampler)
    assert s.size == 3


def test_grid_points_include_both_ends() -> None:
    space = {
        "u": {"type": "uniform", "low": -1, "high": 1},
        "lg": {"type": "loguniform", "low": 1e-4, "high": 1, "points": 3},
    }
    got = grid_all(spec_with(space, sampler="grid"))
    assert len(got) == 15  # default 5 points x 3 points
    us = sorted({p["u"] for p in got})
    assert us == [-1.0, -0.5, 0.0, 0.5, 1.0]
    lgs = sorted({float(p["lg"]) for p in got})
    assert lgs[0] == 1e-4
    assert lgs[2] == 1.0
    assert lgs[1] == pytest.approx(1e-2, rel=1e-12)  # log-spaced, not 0.5


def test_grid_is_deterministic_and_seed_independent() -> None:
    a = grid_all(spec_with(sampler="grid", seed=1))
    b = grid_all(spec_with(sampler="grid", seed=2))
    assert a == b
    assert len(a) == 5 * 5 * 50 * 2


def test_grid_collapsed_points_are_not_repeated() -> None:
    space = {"u": {"type": "uniform", "low": 0.0, "high": 5e-324, "points": 9}}
    s = make_sampler(spec_with(space, sampler="grid"))
    assert isinstance(s, GridSampler)
    assert [s.params_for(i) for i in range(s.size)] == [{"u": 0.0}, {"u": 5e-324}]


def test_large_grid_is_indexed_without_materialising() -> None:
    space = {
        "a": {"type": "choice", "values": list(range(1000))},
        "b": {"type": "int", "low": 0, "high": 999},
    }
    s = make_sampler(spec_with(space, sampler="grid"))
    assert isinstance(s, GridSampler)
    assert s.size == 1_000_000
    assert s.params_for(999_999) == {"a": 999, "b": 999}
    assert s.params_for(1234) == {"a": 1, "b": 234}
    assert s.params_for(1_000_000) is None


def test_listed_configs_come_first_then_the_sampler_from_its_own_start() -> None:
    configs = [
        {"lr": 0.1, "momentum": 0.5, "step_size": 3, "optimizer": "sgd"},
        {"lr": 0.01, "momentum": 0.9, "step_size": 7, "optimizer": "rmsprop"},
    ]
    plain = make_sampler(spec_with())
    listed = make_sampler(spec_with(configs=configs))
    assert [listed.params_for(i) for i in (0, 1)] == configs
    # listing configurations does not change which ones the sampler draws
    assert [listed.params_for(i) for i in range(2, 6)] == [plain.params_for(i) for i in range(4)]


def test_the_fixed_sampler_gives_only_the_listed_configs() -> None:
    configs = [{"lr": 0.1, "momentum": 0.5, "step_size": 3, "optimizer": "sgd"}]
    sampler = make_sampler(spec_with(configs=configs, sampler="fixed"))
    assert sampler.params_for(0) == configs[0]
    assert sampler.params_for(1) is None
    assert sampler.params_for(0) is not sampler.params_for(0)  # callers may mutate their copy
    with pytest.raises(ValueError, match="trial index"):
        sampler.params_for(-1)


def test_grid_after_configs_is_exhausted_at_its_own_size() -> None:
    space = {"a": {"type": "choice", "values": [1, 2]}}
    sampler = make_sampler(spec_with(space, configs=[{"a": 2}], sampler="grid"))
    assert [sampler.params_for(i) for i in range(4)] == [{"a": 2}, {"a": 1}, {"a": 2}, None]
