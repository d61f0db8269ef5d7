"""hpd.core.spec: valid specs in every format, defaults, canonical round-trip, error formats."""

from __future__ import annotations

import copy
import json
import math
import operator
import os
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpd.core.spec import (
    LimitsSpec,
    ParamSpec,
    ResourcesSpec,
    SamplerName,
    Scalar,
    SearcherSpec,
    Spec,
    Strategy,
    SubsetSpec,
    TpeOptions,
    load_spec_file,
    parse_spec,
    parse_spec_text,
    spec_to_dict,
)
from hpd.errors import SpecError

SPECS = Path(__file__).parent / "specs"

DESIGN: dict[str, Any] = {
    "name": "resnet18-cifar10",
    "metric": "val_acc",
    "mode": "max",
    "seed": 0,
    "entrypoint": "examples.cifar10.train:train",
    "workdir": ".",
    "searcher": {
        "name": "asha",
        "max_trials": 128,
        "min_resource": 1,
        "max_resource": 27,
        "eta": 3,
        "brackets": "aggressive",
        "sampler": "random",
        "on_nan": "stop",
    },
    "space": {
        "lr": {"type": "loguniform", "low": 1e-5, "high": 0.5},
        "momentum": {"type": "uniform", "low": 0.05, "high": 0.95},
        "step_size": {"type": "int", "low": 1, "high": 50},
        "optimizer": {"type": "choice", "values": ["sgd", "rmsprop"]},
    },
    "resources": {"gpus_per_trial": 1, "max_concurrent": 8, "min_free_memory_mb": 0},
    "subset": {"strategy": "gradmatch", "fraction": 0.125, "select_every": 20},
    "limits": {"max_restarts": 3, "progress_timeout_s": 600},
}

MINIMAL: dict[str, Any] = {
    "name": "m",
    "metric": "loss",
    "mode": "min",
    "command": ["python", "train.py"],
    "space": {"x": {"type": "uniform", "low": 0, "high": 1}},
}

EXPECTED_DESIGN = Spec(
    name="resnet18-cifar10",
    metric="val_acc",
    mode="max",
    seed=0,
    entrypoint="examples.cifar10.train:train",
    command=None,
    workdir=".",
    searcher=SearcherSpec("asha", 128, 1, 27, 3, "aggressive", "random", "stop"),
    space=(
        ParamSpec("lr", "loguniform", low=1e-5, high=0.5),
        ParamSpec("momentum", "uniform", low=0.05, high=0.95),
        ParamSpec("step_size", "int", low=1, high=50),
        ParamSpec("optimizer", "choice", values=("sgd", "rmsprop")),
    ),
    resources=ResourcesSpec(1, 8, 0),
    subset=SubsetSpec("gradmatch", 0.125, 20, False),
    limits=LimitsSpec(3, 600.0),
)


def errors_of(data: object, **kw: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data, **kw)
    return info.value.errors


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out.update(changes)
    return out


# ------------------------------------------------------------------ valid specs, every format


def test_design_example_as_dict() -> None:
    assert parse_spec(DESIGN) == EXPECTED_DESIGN


@pytest.mark.parametrize("fmt", ["toml", "yaml", "json"])
def test_design_example_text_formats_are_equal(fmt: str) -> None:
    text = (SPECS / f"design.{fmt}").read_text()
    assert parse_spec_text(text, fmt) == EXPECTED_DESIGN  # type: ignore[arg-type]
    assert parse_spec_text(text.encode(), fmt) == EXPECTED_DESIGN  # type: ignore[arg-type]


@pytest.mark.parametrize("ext", ["toml", "yaml", "json"])
def test_load_spec_file_resolves_workdir_to_the_files_directory(ext: str) -> None:
    spec = load_spec_file(str(SPECS / f"design.{ext}"))
    assert spec.workdir == str(SPECS.resolve())
    assert spec == EXPECTED_DESIGN.__class__(
        **{**{f: getattr(EXPECTED_DESIGN, f) for f in Spec.__slots__}, "workdir": spec.workdir}
    )


def test_yml_extension_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.yml").write_text((SPECS / "design.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    spec = load_spec_file("sub/s.yml")
    assert spec.workdir == str(tmp_path / "sub")
    assert os.path.isabs(spec.workdir)


def test_yaml_scientific_floats_without_a_dot_are_numbers() -> None:
    spec = parse_spec_text(
        "name: y\nmetric: m\nmode: min\nentrypoint: a:b\n"
        "space:\n  lr: {type: loguniform, low: 1e-5, high: 1E+2}\n",
        "yaml",
    )
    assert spec.space[0].low == 1e-5
    assert spec.space[0].high == 100.0


def test_the_spec_is_frozen_and_hashable() -> None:
    spec = parse_spec(DESIGN)
    assert hash(spec) == hash(parse_spec(copy.deepcopy(DESIGN)))
    assert {spec: 1}[parse_spec(DESIGN)] == 1
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


def test_input_is_not_modified() -> None:
    data = copy.deepcopy(DESIGN)
    parse_spec(data, base_dir="/x")
    assert data == DESIGN


# ------------------------------------------------------------------ defaults


def test_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.seed == 0
    assert spec.workdir == "."
    assert spec.entrypoint is None
    assert spec.command == ("python", "train.py")
    assert spec.searcher == SearcherSpec()
    assert spec.searcher == SearcherSpec("asha", 16, 1, 9, 3, "aggressive", "random", "stop")
    assert spec.resources == ResourcesSpec(1, 8, 0)
    assert spec.subset == SubsetSpec("none", 1.0, 20, False)
    assert spec.limits == LimitsSpec(3, 600.0)
    assert spec.env == ()
    assert spec.space == (ParamSpec("x", "uniform", low=0.0, high=1.0),)


def test_empty_tables_mean_defaults() -> None:
    data = with_(MINIMAL, searcher={}, resources={}, subset={}, limits={}, env={})
    assert parse_spec(data) == parse_spec(MINIMAL)


def test_null_entrypoint_or_command_counts_as_absent() -> None:
    assert parse_spec(with_(MINIMAL, entrypoint=None)) == parse_spec(MINIMAL)
    data = with_(DESIGN, command=None)
    assert parse_spec(data) == EXPECTED_DESIGN


def test_hyperband_defaults_to_conservative_brackets() -> None:
    assert parse_spec(with_(MINIMAL, searcher={"name": "hyperband"})).searcher.brackets == (
        "conservative"
    )
    explicit = with_(MINIMAL, searcher={"name": "hyperband", "brackets": "aggressive"})
    assert parse_spec(explicit).searcher.brackets == "aggressive"
    assert parse_spec(with_(MINIMAL, searcher={"name": "sha"})).searcher.brackets == "aggressive"


def test_number_normalisation() -> None:
    spec = parse_spec(
        with_(
            MINIMAL,
            space={
                "u": {"type": "uniform", "low": -1, "high": 2},
                "i": {"type": "int", "low": -3, "high": 3},
                "c": {"type": "choice", "values": [1, 2.5, True, "x"]},
            },
            limits={"progress_timeout_s": 30},
        )
    )
    u, i, c = spec.space
    assert (type(u.low), type(u.high)) == (float, float)
    assert (type(i.low), type(i.high)) == (int, int)
    assert c.values == (1, 2.5, True, "x")
    assert [type(v) for v in c.values or ()] == [int, float, bool, str]
    assert type(spec.limits.progress_timeout_s) is float


def test_space_keeps_the_given_order() -> None:
    names = [f"p{i}" for i in range(30, 0, -1)]
    space = {n: {"type": "int", "low": 0, "high": 1} for n in names}
    assert [p.name for p in parse_spec(with_(MINIMAL, space=space)).space] == names


def test_env_is_sorted_and_values_kept() -> None:
    spec = parse_spec(with_(MINIMAL, env={"ZED": "1", "A_B": "", "LD_PRELOAD": "/x.so"}))
    assert spec.env == (("A_B", ""), ("LD_PRELOAD", "/x.so"), ("ZED", "1"))


def test_grid_limits_are_inclusive() -> None:
    space = {
        "a": {"type": "int", "low": 1, "high": 1000},  # exactly 1000 values
        "b": {"type": "choice", "values": list(range(1000))},  # 1000 x 1000 = 1e6 points
    }
    parse_spec(with_(MINIMAL, searcher={"sampler": "grid"}, space=space))


def test_large_int_range_is_fine_for_the_random_sampler() -> None:
    parse_spec(with_(MINIMAL, space={"a": {"type": "int", "low": 0, "high": 10**12}}))


# ------------------------------------------------------------------ base_dir


@pytest.mark.parametrize(
    ("workdir", "base_dir", "expected"),
    [
        (".", "/home/u/proj", "/home/u/proj"),
        ("sub/../data", "/home/u/proj", "/home/u/proj/data"),
        ("../other", "/home/u/proj", "/home/u/other"),
        ("/abs/path", "/home/u/proj", "/abs/path"),
        ("rel", None, "rel"),
        (".", None, "."),
    ],
)
def test_base_dir_resolution(workdir: str, base_dir: str | None, expected: str) -> None:
    assert parse_spec(with_(MINIMAL, workdir=workdir), base_dir=base_dir).workdir == expected


def test_base_dir_is_pure_string_work() -> None:
    # a base_dir that does not exist is fine: nothing is looked up on disk
    spec = parse_spec(MINIMAL, base_dir="/does/not/exist")
    assert spec.workdir == "/does/not/exist"


# ------------------------------------------------------------------ error formats


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"searcher": {"eta": 1.5}}, "searcher.eta: must be an integer >= 2, got 1.5"),
        ({"searcher": {"eta": 1}}, "searcher.eta: must be an integer >= 2, got 1"),
        ({"searcher": {"eta": 5000}}, "searcher.eta: must be an integer <= 1000, got 5000"),
        ({"searcher": {"etaa": 3}}, "searcher.etaa: unknown field"),
        ({"foo": 1}, "foo: unknown field"),
        ({"space": {}}, "space: must not be empty"),
        (
            {"space": {"lr": {"type": "loguniform", "low": 0, "high": 1}}},
            "space.lr.low: must be > 0 for loguniform, got 0",
        ),
        (
            {"entrypoint": "a:b"},
            "entrypoint: exactly one of entrypoint or command is required",
        ),
        (
            {"command": "python train.py"},
            "command: must be a list of strings (argv), not a shell string, got 'python train.py'",
        ),
        (
            {"searcher": {"sampler": "tpe", "sampler_options": {"n_startup": 0}}},
            "searcher.sampler_options.n_startup: must be an integer in 1..100000, got 0",
        ),
        (
            {"searcher": {"sampler": "tpe", "sampler_options": {"gamma": 0.1}}},
            "searcher.sampler_options.gamma: unknown field",
        ),
        (
            {"searcher": {"sampler": "tpe", "sampler_options": {"multivariate": "yes"}}},
            "searcher.sampler_options.multivariate: must be true or false, got 'yes'",
        ),
        (
            {"searcher": {"sampler": "tpe", "sampler_options": [1]}},
            "searcher.sampler_options: must be a table (mapping), got [1]",
        ),
        (
            {"searcher": {"sampler_options": {"n_startup": 5}}},
            "searcher.sampler_options: only the tpe sampler takes options (sampler is 'random'),"
            " got {'n_startup': 5}",
        ),
        (
            {
                "searcher": {"sampler": "tpe"},
                "space": {"lr": {"type": "uniform", "low": 0, "high": 1, "points": 4}},
            },
            "space.lr.points: is for the grid sampler only; the tpe sampler models the whole"
            " range, got 4",
        ),
        (
            {
                "searcher": {"sampler": "tpe"},
                "space": {"k": {"type": "choice", "values": [1]}, "n": {"type": "int", "low": 2, "high": 2}},
            },
            "space: the tpe sampler needs a parameter with more than one value",
        ),
        (
            {"searcher": {"min_resource": 10, "max_resource": 3}},
            "searcher.max_resource: must be >= min_resource (10), got 3",
        ),
        (
            {"subset": {"strategy": "craig"}},
            "subset.fraction: must be < 1 when strategy is 'craig', got 1.0",
        ),
        (
            {"subset": {"strategy": "random", "fraction": 0.5, "per_batch": True}},
            "subset.per_batch: only valid with strategy 'gradmatch', got True",
        ),
        (
            {
                "searcher": {"sampler": "grid"},
                "space": {"n": {"type": "int", "low": 0, "high": 5000}},
            },
            "space.n: int range too large for the grid sampler (max 1000 values), got 5001",
        ),
        (
            {"limits": {"progress_timeout_s": math.nan}},
            "limits.progress_timeout_s: must be finite, got nan",
        ),
        (
            {"seed": 2**63},
            "seed: must be an integer in 0..9223372036854775807, got 9223372036854775808",
        ),
        (
            {"resources": {"gpus_per_trial": 9}},
            "resources.gpus_per_trial: must be an integer in 0..8, got 9",
        ),
        ({"mode": "maximize"}, "mode: must be one of 'max', 'min', got 'maximize'"),
        ({"metric": "hpd_x"}, "metric: must not start with 'hpd_' (reserved for hpd), got 'hpd_x'"),
        (
            {"space": {"x": {"type": "uniform", "low": 1, "high": 1}}},
            "space.x.high: must be > low (1.0), got 1",
        ),
        (
            {"space": {"x": {"type": "int", "low": 1, "high": 2, "log": True, "points": 3}}},
            "space.x.points: not valid for type 'int', got 3",
        ),
        (
            {"space": {"x": {"type": "choice", "values": ["a", "a"]}}},
            "space.x.values[1]: duplicate value, got 'a'",
        ),
        (
            {"env": {"HPD_X": "1"}},
            "env.HPD_X: must not start with HPD_ (reserved for hpd), got 'HPD_X'",
        ),
    ],
)
def test_error_message_format(changes: dict[str, Any], expected: str) -> None:
    assert expected in errors_of(with_(MINIMAL, **changes))


def test_missing_required_fields_are_all_reported() -> None:
    errs = errors_of({})
    assert errs == [
        "name: is required",
        "metric: is required",
        "mode: is required",
        "entrypoint: exactly one of entrypoint or command is required",
        "space: is required",
    ]


def test_every_error_is_reported_in_schema_order() -> None:
    data = with_(
        MINIMAL,
        name="",
        seed=-1,
        searcher={"eta": 1, "max_trials": 0},
        resources={"max_concurrent": 0},
        limits={"max_restarts": -1},
    )
    errs = errors_of(data)
    assert [e.split(":")[0] for e in errs] == [
        "name",
        "seed",
        "searcher.max_trials",
        "searcher.eta",
        "resources.max_concurrent",
        "limits.max_restarts",
    ]


def test_error_is_a_value_error_with_all_lines_in_its_message() -> None:
    with pytest.raises(ValueError, match=r"(?s)name: is required.*metric: is required"):
        parse_spec({})


def test_errors_are_capped_with_a_count() -> None:
    data = with_(MINIMAL, **{f"junk{i}": i for i in range(1000)})
    errs = errors_of(data)
    assert len(errs) == 201
    assert errs[-1] == "spec: 800 more errors not shown"


def test_bad_values_are_shown_bounded() -> None:
    (err,) = errors_of(with_(MINIMAL, name="x" * 10_000))
    assert err.startswith("name: must be at most 128 characters, got 'xxxx")
    assert err.endswith("... (10000 long)")
    assert len(err) < 200
    (err,) = errors_of(with_(MINIMAL, seed=10**10_000))
    assert err == "seed: must be an integer in 0..9223372036854775807, got <integer of 33220 bits>"
    (err,) = errors_of(with_(MINIMAL, name=["a\nb", [[1]], {"k": [1, 2]}] * 3))
    assert "\n" not in err
    assert len(err) < 200


def test_text_errors_name_the_format_and_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_text('name = "x"\nmetric = \n', "toml")
    assert info.value.errors[0].startswith("spec: invalid TOML: ")
    assert "line 2" in info.value.errors[0]
    with pytest.raises(SpecError) as info:
        parse_spec_text('{\n "name": "x",\n}', "json")
    (err,) = info.value.errors
    assert err.startswith("spec: invalid JSON: ")
    assert err.endswith("(at line 3, column 1)")
    with pytest.raises(SpecError) as info:
        parse_spec_text("name: [x\nmetric: y\n", "yaml")
    assert info.value.errors[0].startswith("spec: invalid YAML: ")
    assert "(at line 2, column 7)" in info.value.errors[0]


def test_load_spec_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "s.toml"
    bad.write_text("name = ")
    with pytest.raises(SpecError) as info:
        load_spec_file(str(bad))
    assert info.value.errors[0].startswith(f"{bad}: invalid TOML: ")
    with pytest.raises(SpecError, match="unknown spec format"):
        load_spec_file(str(tmp_path / "s.txt"))
    with pytest.raises(SpecError, match="cannot read"):
        load_spec_file(str(tmp_path / "missing.json"))
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(SpecError, match="cannot read"):
        load_spec_file(str(tmp_path / "dir.yaml"))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (2 << 20))
    with pytest.raises(SpecError, match="too large"):
        load_spec_file(str(big))


def test_field_errors_from_a_file_are_plain_field_paths(tmp_path: Path) -> None:
    f = tmp_path / "s.json"
    f.write_text(json.dumps(with_(DESIGN, searcher={"eta": 1.5})))
    with pytest.raises(SpecError) as info:
        load_spec_file(str(f))
    assert info.value.errors == ["searcher.eta: must be an integer >= 2, got 1.5"]


# ------------------------------------------------------------------ round trip (hypothesis)

_HEAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_TAIL = _HEAD + "0123456789"


def ident(head: str = _HEAD, tail: str = _TAIL, max_size: int = 63) -> st.SearchStrategy[str]:
    return st.builds(operator.add, st.sampled_from(head), st.text(tail, max_size=max_size))


identifiers = ident()
safe_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30
)
finite = st.floats(allow_nan=False, allow_infinity=False)
dotted = st.lists(ident(max_size=8), min_size=1, max_size=3).map(".".join)
entrypoints = st.builds(lambda a, b: f"{a}:{b}", dotted, dotted)
metrics = ident(tail=_TAIL + ".-", max_size=40).filter(lambda m: not m.startswith("hpd_"))
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
env_names = ident(_UPPER, _UPPER + "0123456789", 20).filter(
    lambda n: not n.startswith("HPD_") and n != "CUDA_VISIBLE_DEVICES"
)
names = st.text(st.characters(categories=("L", "M", "N", "P", "S")), min_size=1, max_size=128)
scalars = st.one_of(safe_text, st.integers(-(2**63), 2**63 - 1), finite, st.booleans())


@st.composite
def float_bounds(draw: st.DrawFn, lo: float, hi: float) -> tuple[float, float]:
    a = draw(st.floats(lo, hi))
    b = draw(st.floats(lo, hi).filter(lambda b: b != a))
    return (min(a, b), max(a, b))


@st.composite
def params(draw: st.DrawFn, name: str, grid: bool, points_ok: bool = True) -> ParamSpec:
    typ = draw(st.sampled_from(["uniform", "loguniform", "int", "choice"]))
    points = draw(st.none() | st.integers(2, 4 if grid else 1000)) if points_ok else None
    if typ == "uniform":
        lo, hi = draw(float_bounds(-1e300, 1e300))
        return ParamSpec(name, "uniform", low=lo, high=hi, points=points)
    if typ == "loguniform":
        lo, hi = draw(float_bounds(5e-324, 1e308))
        return ParamSpec(name, "loguniform", low=lo, high=hi, points=points)
    if typ == "int":
        log = draw(st.booleans())
        lo = draw(st.integers(1 if log else -(10**15), 10**15))
        hi = draw(st.integers(lo, min(lo + (5 if grid else 10**15), 10**15)))
        return ParamSpec(name, "int", low=lo, high=hi, log=log)
    unique = st.lists(
        scalars, min_size=1, max_size=4 if grid else 20, unique_by=lambda v: (type(v) is bool, v)
    )
    return ParamSpec(name, "choice", values=tuple(draw(unique)))


@st.composite
def searchers(draw: st.DrawFn, sampler: SamplerName) -> SearcherSpec:
    min_r = draw(st.integers(1, 10**9))
    return SearcherSpec(
        name=draw(st.sampled_from(["asha", "hyperband", "sha", "random"])),
        max_trials=draw(st.integers(1, 100_000)),
        min_resource=min_r,
        max_resource=draw(st.integers(min_r, 10**9)),
        eta=draw(st.integers(2, 1000)),
        brackets=draw(st.sampled_from(["aggressive", "standard", "conservative"])),
        sampler=sampler,
        on_nan=draw(st.sampled_from(["stop", "retry"])),
        sampler_options=draw(tpe_options()) if sampler == "tpe" else None,
    )


@st.composite
def tpe_options(draw: st.DrawFn) -> TpeOptions:
    return TpeOptions(
        n_startup=draw(st.integers(1, 100_000)),
        multivariate=draw(st.booleans()),
        constant_liar=draw(st.booleans()),
        n_ei_candidates=draw(st.integers(1, 10_000)),
    )


@st.composite
def subsets(draw: st.DrawFn) -> SubsetSpec:
    strategy: Strategy = draw(st.sampled_from(get_args(Strategy)))
    fraction = 1.0
    if strategy != "none":
        fraction = draw(st.floats(0, 1, exclude_min=True, exclude_max=True))
    return SubsetSpec(
        strategy=strategy,
        fraction=fraction,
        select_every=draw(st.integers(1, 10**6)),
        per_batch=strategy == "gradmatch" and draw(st.booleans()),
    )


def config_values(param: ParamSpec) -> st.SearchStrategy[Scalar]:
    """Values a listed configuration may give ``param``."""
    if param.type == "choice":
        return st.sampled_from(param.values or ())
    if param.type == "int":
        return st.integers(int(param.low or 0), int(param.high or 0))
    return st.floats(float(param.low or 0), float(param.high or 0))


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    sampler: SamplerName = draw(st.sampled_from(get_args(SamplerName)))
    space_names = draw(st.lists(identifiers, min_size=1, max_size=6, unique=True))
    use_command = draw(st.booleans())
    command = None
    if use_command:
        command = (
            draw(st.text("abc/._-", min_size=1, max_size=10)),
            *draw(st.lists(safe_text, max_size=5)),
        )
    space = tuple(draw(params(n, sampler == "grid", sampler != "tpe")) for n in space_names)
    if sampler == "tpe":  # a model needs something that varies
        others = tuple(p for p in space if p.name != "tpe_x")
        space = (ParamSpec("tpe_x", "uniform", low=0.0, high=1.0), *others)
    config = st.tuples(*(st.tuples(st.just(p.name), config_values(p)) for p in space))
    configs = draw(st.lists(config, min_size=1 if sampler == "fixed" else 0, max_size=3))
    return Spec(
        name=draw(names.filter(str.isprintable)),
        metric=draw(metrics),
        mode=draw(st.sampled_from(["max", "min"])),
        seed=draw(st.integers(0, 2**63 - 1)),
        entrypoint=None if use_command else draw(entrypoints),
        command=command,
        workdir=draw(safe_text.filter(bool)),
        searcher=draw(searchers(sampler)),
        space=space,
        resources=ResourcesSpec(
            draw(st.integers(0, 8)), draw(st.integers(1, 4096)), draw(st.integers(0, 10**8))
        ),
        subset=draw(subsets()),
        limits=LimitsSpec(draw(st.integers(0, 100)), draw(st.floats(0, 1e9, exclude_min=True))),
        env=tuple(sorted(draw(st.dictionaries(env_names, safe_text, max_size=4)).items())),
        configs=tuple(configs),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_round_trip(spec: Spec) -> None:
    d = spec_to_dict(spec)
    assert parse_spec(d) == spec
    # through real JSON text too (the form the daemon stores), and canonical output is stable
    text = json.dumps(d, allow_nan=False)
    again = parse_spec_text(text, "json")
    assert again == spec
    assert json.dumps(spec_to_dict(again), allow_nan=False) == text
    assert hash(again) == hash(spec)


def test_spec_to_dict_shape() -> None:
    d = spec_to_dict(parse_spec(MINIMAL))
    assert list(d) == [
        "name",
        "metric",
        "mode",
        "seed",
        "command",
        "workdir",
        "searcher",
        "space",
        "resources",
        "subset",
        "limits",
        "env",
    ]
    assert d["space"] == {"x": {"type": "uniform", "low": 0.0, "high": 1.0}}
    assert d["command"] == ["python", "train.py"]
    assert "entrypoint" not in d
    d = spec_to_dict(parse_spec(DESIGN))
    assert d["space"]["step_size"] == {"type": "int", "low": 1, "high": 50, "log": False}  # type: ignore[index]
    assert "command" not in d
    json.dumps(d, allow_nan=False)


# -- listed configurations (`configs`) ------------------------------------------------------

CONFIG_SPACE: dict[str, Any] = {
    "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
    "layers": {"type": "int", "low": 1, "high": 4},
    "opt": {"type": "choice", "values": ["sgd", 1, True]},
}


def _with_configs(configs: object, **searcher: Any) -> dict[str, Any]:
    return {**MINIMAL, "space": CONFIG_SPACE, "configs": configs, "searcher": searcher}


def test_configs_are_kept_in_space_order_and_normalised() -> None:
    spec = parse_spec(_with_configs([{"opt": 1, "layers": 2, "lr": 1}], sampler="fixed"))
    assert spec.configs == ((("lr", 1.0), ("layers", 2), ("opt", 1)),)
    assert isinstance(spec.configs[0][0][1], float)
    assert spec_to_dict(spec)["configs"] == [{"lr": 1.0, "layers": 2, "opt": 1}]


def test_no_configs_key_in_the_canonical_form_when_none_are_listed() -> None:
    assert "configs" not in spec_to_dict(parse_spec(MINIMAL))


@pytest.mark.parametrize(
    ("configs", "expected"),
    [
        ({"lr": 0.1}, "configs: must be a list of tables, got {'lr': 0.1}"),
        ([3], "configs[0]: must be a table (mapping), got 3"),
        ([{"lr": 0.1, "layers": 2}], "configs[0].opt: is required (every parameter of space)"),
        ([{"lr": 0.1, "layers": 2, "opt": "sgd", "x": 1}], "configs[0].x: unknown field"),
        ([{"lr": 2.0, "layers": 2, "opt": "sgd"}], "configs[0].lr: must be within [0.0001, 1.0], got 2.0"),
        ([{"lr": "0.1", "layers": 2, "opt": "sgd"}], "configs[0].lr: must be a number in [0.0001, 1.0], got '0.1'"),
        ([{"lr": float("nan"), "layers": 2, "opt": "sgd"}], "configs[0].lr: must be a number in [0.0001, 1.0], got nan"),
        ([{"lr": 0.1, "layers": 2.0, "opt": "sgd"}], "configs[0].layers: must be an integer in 1..4, got 2.0"),
        ([{"lr": 0.1, "layers": 5, "opt": "sgd"}], "configs[0].layers: must be an integer in 1..4, got 5"),
        ([{"lr": 0.1, "layers": True, "opt": "sgd"}], "configs[0].layers: must be an integer in 1..4, got True"),
        ([{"lr": 0.1, "layers": 1, "opt": "adam"}], "configs[0].opt: must be one of ['sgd', 1, True], got 'adam'"),
        # True is not the choice 1, and 1 is not the choice True
        ([{"lr": 0.1, "layers": 1, "opt": False}], "configs[0].opt: must be one of ['sgd', 1, True], got False"),
    ],
)
def test_bad_configs_name_the_field(configs: object, expected: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_spec(_with_configs(configs))
    assert e.value.errors == [expected]


def test_the_fixed_sampler_needs_configs() -> None:
    with pytest.raises(SpecError) as e:
        parse_spec(_with_configs([], sampler="fixed"))
    assert e.value.errors == [
        'configs: must list at least one configuration when searcher.sampler is "fixed"'
    ]


def test_configs_are_not_checked_against_a_broken_space() -> None:
    bad_space = {**MINIMAL, "space": {"lr": {"type": "uniform", "low": 2, "high": 1}}}
    with pytest.raises(SpecError) as e:
        parse_spec({**bad_space, "configs": [{"lr": 1.5}]})
    assert e.value.errors == ["space.lr.high: must be > low (2.0), got 1"]


def test_tpe_options_defaults_and_round_trip() -> None:
    base = {**copy.deepcopy(DESIGN), "searcher": {"sampler": "tpe"}}
    spec = parse_spec(base)
    assert spec.searcher.sampler_options == TpeOptions()
    assert TpeOptions().n_startup == 10 and TpeOptions().multivariate and TpeOptions().constant_liar
    assert parse_spec(spec_to_dict(spec)) == spec
    assert spec_to_dict(spec)["searcher"]["sampler_options"] == {  # type: ignore[index]
        "n_startup": 10,
        "multivariate": True,
        "constant_liar": True,
        "n_ei_candidates": 24,
    }
    custom = parse_spec(
        {**base, "searcher": {"sampler": "tpe", "sampler_options": {"n_startup": 4, "multivariate": False}}}
    )
    assert custom.searcher.sampler_options == TpeOptions(n_startup=4, multivariate=False)
    # other samplers have no options, and their canonical form has no such key
    assert parse_spec(copy.deepcopy(DESIGN)).searcher.sampler_options is None
    assert "sampler_options" not in spec_to_dict(parse_spec(copy.deepcopy(DESIGN)))["searcher"]  # type: ignore[operator]
