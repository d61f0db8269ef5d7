"""hpd.core.spec on bad input: a table of hand-written malformed specs, each with the exact field path
its error must name, then mutation fuzzing (hypothesis) that may only ever produce a Spec or a
SpecError whose every line starts with a field path."""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpd.core.spec import Spec, parse_spec, parse_spec_text
from hpd.errors import SpecError
from tests.unit.test_spec import DESIGN

# The DESIGN §1.2 example, plus an [env] table so that its fields are mutated too.
VALID: dict[str, Any] = {**DESIGN, "env": {"OMP_NUM_THREADS": "4"}}

DELETE = object()
NAN, INF = math.nan, math.inf


def deep_list(depth: int) -> list[Any]:
    """A list nested ``depth`` deep, built without recursion."""
    out: list[Any] = []
    for _ in range(depth):
        out = [out]
    return out


def deep_dict(depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _ in range(depth):
        out = {"a": out}
    return out


Mutation = Callable[[dict[str, Any]], object]


def setp(path: str, value: object) -> Mutation:
    """Set (or, with DELETE, remove) the dotted ``path`` of the spec."""

    def apply(d: dict[str, Any]) -> object:
        *parents, last = path.split(".")
        node = d
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
        return d

    return apply


def many(*muts: Mutation) -> Mutation:
    def apply(d: dict[str, Any]) -> object:
        for m in muts:
            d = m(d)  # type: ignore[assignment]
        return d

    return apply


def whole(value: object) -> Mutation:
    return lambda _d: value


GRID = setp("searcher.sampler", "grid")
CMD = many(setp("entrypoint", DELETE), setp("command", ["python", "train.py"]))

# (case id, mutation, the field path one error must name exactly, a word its message contains)
CASES: list[tuple[str, Mutation, str, str]] = [
    # --- whole document
    ("not-a-mapping-list", whole([1, 2]), "spec", "must be a table"),
    ("not-a-mapping-none", whole(None), "spec", "must be a table"),
    ("not-a-mapping-str", whole("name = 'x'"), "spec", "must be a table"),
    ("not-a-mapping-int", whole(3), "spec", "must be a table"),
    ("digit-top-key", setp("1", 2), "1", "unknown field"),
    ("int-top-key", lambda d: dict[object, object](d) | {1: 2}, "spec", "must be strings"),
    ("unknown-top", setp("foo", 1), "foo", "unknown field"),
    ("typo-top", many(setp("metirc", "x"), setp("metric", DELETE)), "metirc", "unknown"),
    ("typo-top-missing", many(setp("metirc", "x"), setp("metric", DELETE)), "metric", "required"),
    ("unknown-top-odd-key", setp("a b\nc", 1), "'a b\\nc'", "unknown field"),
    ("unknown-top-deep", setp("junk", deep_list(10_000)), "junk", "unknown field"),
    # --- name
    ("name-missing", setp("name", DELETE), "name", "is required"),
    ("name-int", setp("name", 3), "name", "must be a string"),
    ("name-none", setp("name", None), "name", "must be a string"),
    ("name-list", setp("name", ["a"]), "name", "must be a string"),
    ("name-empty", setp("name", ""), "name", "must not be empty"),
    ("name-long", setp("name", "x" * 129), "name", "at most 128"),
    ("name-newline", setp("name", "a\nb"), "name", "printable"),
    ("name-tab", setp("name", "a\tb"), "name", "printable"),
    ("name-nul", setp("name", "a\x00b"), "name", "NUL"),
    ("name-surrogate", setp("name", "a\ud800"), "name", "surrogates"),
    ("name-deep", setp("name", deep_list(10_000)), "name", "must be a string"),
    ("name-huge", setp("name", "x" * 10_000_000), "name", "at most 128"),
    # --- metric
    ("metric-missing", setp("metric", DELETE), "metric", "is required"),
    ("metric-int", setp("metric", 5), "metric", "must be a string"),
    ("metric-space", setp("metric", "val acc"), "metric", "must match"),
    ("metric-digit", setp("metric", "1acc"), "metric", "must match"),
    ("metric-reserved", setp("metric", "hpd_loss"), "metric", "reserved"),
    ("metric-long", setp("metric", "m" * 129), "metric", "at most 128"),
    ("metric-empty", setp("metric", ""), "metric", "must not be empty"),
    # --- mode
    ("mode-missing", setp("mode", DELETE), "mode", "is required"),
    ("mode-word", setp("mode", "maximize"), "mode", "must be one of"),
    ("mode-case", setp("mode", "MAX"), "mode", "must be one of"),
    ("mode-bool", setp("mode", True), "mode", "must be one of"),
    # --- seed
    ("seed-negative", setp("seed", -1), "seed", "integer"),
    ("seed-2**63", setp("seed", 2**63), "seed", "integer"),
    ("seed-float", setp("seed", 1.0), "seed", "integer"),
    ("seed-str", setp("seed", "0"), "seed", "integer"),
    ("seed-bool", setp("seed", True), "seed", "integer"),
    ("seed-huge", setp("seed", 10**5000), "seed", "integer"),
    ("seed-nan", setp("seed", NAN), "seed", "integer"),
    # --- entrypoint / command
    ("both", setp("command", ["python"]), "entrypoint", "exactly one"),
    ("neither", setp("entrypoint", DELETE), "entrypoint", "exactly one"),
    ("neither-nulls", many(setp("entrypoint", None), setp("command", None)), "entrypoint", "one"),
    ("ep-no-colon", setp("entrypoint", "train"), "entrypoint", "package.module:function"),
    ("ep-two-colons", setp("entrypoint", "a:b:c"), "entrypoint", "package.module:function"),
    ("ep-no-function", setp("entrypoint", "a.b:"), "entrypoint", "package.module:function"),
    ("ep-path", setp("entrypoint", "../x:y"), "entrypoint", "package.module:function"),
    ("ep-dash", setp("entrypoint", "my-pkg:f"), "entrypoint", "package.module:function"),
    ("ep-int", setp("entrypoint", 3), "entrypoint", "must be a string"),
    ("ep-long", setp("entrypoint", "a" * 600 + ":f"), "entrypoint", "at most 512"),
    ("cmd-shell-string", many(CMD, setp("command", "python train.py")), "command", "shell"),
    ("cmd-empty", many(CMD, setp("command", [])), "command", "must not be empty"),
    ("cmd-table", many(CMD, setp("command", {"a": 1})), "command", "list of strings"),
    ("cmd-int-args", many(CMD, setp("command", [1, 2])), "command[0]", "must be a string"),
    ("cmd-none-arg", many(CMD, setp("command", ["python", None])), "command[1]", "string"),
    ("cmd-empty-argv0", many(CMD, setp("command", ["", "x"])), "command[0]", "not be empty"),
    ("cmd-nul", many(CMD, setp("command", ["python", "a\x00b"])), "command[1]", "NUL"),
    ("cmd-too-many", many(CMD, setp("command", ["a"] * 300)), "command", "at most 256"),
    ("cmd-long-arg", many(CMD, setp("command", ["a", "b" * 5000])), "command[1]", "at most 4096"),
    ("cmd-nested", many(CMD, setp("command", [["python"]])), "command[0]", "must be a string"),
    ("cmd-deep", many(CMD, setp("command", deep_list(10_000))), "command[0]", "string"),
    # --- workdir
    ("workdir-int", setp("workdir", 3), "workdir", "must be a string"),
    ("workdir-empty", setp("workdir", ""), "workdir", "must not be empty"),
    ("workdir-nul", setp("workdir", "a\x00"), "workdir", "NUL"),
    ("workdir-long", setp("workdir", "a/" * 3000), "workdir", "at most 4096"),
    # --- searcher
    ("searcher-list", setp("searcher", [1]), "searcher", "must be a table"),
    ("searcher-str", setp("searcher", "asha"), "searcher", "must be a table"),
    ("searcher-name", setp("searcher.name", "bohb"), "searcher.name", "must be one of"),
    ("searcher-name-none", setp("searcher.name", None), "searcher.name", "must be one of"),
    ("searcher-typo", setp("searcher.etaa", 3), "searcher.etaa", "unknown field"),
    ("searcher-int-key", setp("searcher", {3: 3}), "searcher", "must be strings"),
    ("eta-1", setp("searcher.eta", 1), "searcher.eta", "integer >= 2"),
    ("eta-1.5", setp("searcher.eta", 1.5), "searcher.eta", "integer >= 2"),
    ("eta-3.0", setp("searcher.eta", 3.0), "searcher.eta", "integer >= 2"),
    ("eta-bool", setp("searcher.eta", True), "searcher.eta", "integer >= 2"),
    ("eta-huge", setp("searcher.eta", 10**6), "searcher.eta", "<= 1000"),
    ("eta-nan", setp("searcher.eta", NAN), "searcher.eta", "integer"),
    ("eta-str", setp("searcher.eta", "3"), "searcher.eta", "integer"),
    ("trials-0", setp("searcher.max_trials", 0), "searcher.max_trials", "1..100000"),
    ("trials-big", setp("searcher.max_trials", 100_001), "searcher.max_trials", "1..100000"),
    ("trials-str", setp("searcher.max_trials", "128"), "searcher.max_trials", "integer"),
    ("trials-huge", setp("searcher.max_trials", 10**30), "searcher.max_trials", "integer"),
    ("min-res-0", setp("searcher.min_resource", 0), "searcher.min_resource", ">= 1"),
    ("min-res-neg", setp("searcher.min_resource", -1), "searcher.min_resource", ">= 1"),
    ("min-res-float", setp("searcher.min_resource", 1.5), "searcher.min_resource", "integer"),
    (
        "max-lt-min",
        setp("searcher", {"min_resource": 10, "max_resource": 5}),
        "searcher.max_resource",
        ">= min_resource",
    ),
    ("max-res-inf", setp("searcher.max_resource", INF), "searcher.max_resource", "integer"),
    ("max-res-huge", setp("searcher.max_resource", 10**12), "searcher.max_resource", "<="),
    ("brackets", setp("searcher.brackets", "all"), "searcher.brackets", "must be one of"),
    (
        "tpe-option",
        setp("searcher", {"sampler": "tpe", "sampler_options": {"n_ei_candidates": 0}}),
        "searcher.sampler_options.n_ei_candidates",
        "integer",
    ),
    ("sampler-sobol", setp("searcher.sampler", "sobol"), "searcher.sampler", "must be one of"),
    ("on-nan", setp("searcher.on_nan", "ignore"), "searcher.on_nan", "must be one of"),
    ("on-nan-bool", setp("searcher.on_nan", False), "searcher.on_nan", "must be one of"),
    # --- space
    ("space-missing", setp("space", DELETE), "space", "is required"),
    ("space-empty", setp("space", {}), "space", "must not be empty"),
    ("space-list", setp("space", [{"name": "lr"}]), "space", "table of parameters"),
    ("space-str", setp("space", "lr"), "space", "table of parameters"),
    ("space-int-key", setp("space", {1: {"type": "int"}}), "space", "must be strings"),
    ("pname-digit", setp("space.1lr", {"type": "int", "low": 0, "high": 1}), "space.1lr", "ident"),
    ("pname-dash", setp("space.lr-x", {"type": "int", "low": 0, "high": 1}), "space.lr-x", "ide"),
    ("pname-long", setp("space." + "p" * 65, {}), "space.'" + "p" * 60 + "'... (65 long)", "ide"),
    ("pname-space", setp("space.a b", {"type": "int"}), "space.'a b'", "identifiers"),
    ("pname-unicode", setp("space.λ", {"type": "int"}), "space.'λ'", "identifiers"),
    ("param-scalar", setp("space.lr", 0.1), "space.lr", "must be a table"),
    ("param-list", setp("space.lr", [1e-5, 0.5]), "space.lr", "must be a table"),
    ("type-missing", setp("space.lr.type", DELETE), "space.lr.type", "is required"),
    ("type-normal", setp("space.lr.type", "normal"), "space.lr.type", "must be one of"),
    ("type-int", setp("space.lr.type", 3), "space.lr.type", "must be one of"),
    ("log-low-0", setp("space.lr.low", 0), "space.lr.low", "> 0 for loguniform"),
    ("log-low-neg", setp("space.lr.low", -1.0), "space.lr.low", "> 0 for loguniform"),
    ("low-ge-high", setp("space.momentum.low", 0.95), "space.momentum.high", "must be > low"),
    ("low-gt-high", setp("space.lr.high", 1e-6), "space.lr.high", "must be > low"),
    ("low-missing", setp("space.lr.low", DELETE), "space.lr.low", "is required"),
    ("high-missing", setp("space.momentum.high", DELETE), "space.momentum.high", "required"),
    ("low-nan", setp("space.lr.low", NAN), "space.lr.low", "must be finite"),
    ("high-inf", setp("space.lr.high", INF), "space.lr.high", "must be finite"),
    ("low-neg-inf", setp("space.momentum.low", -INF), "space.momentum.low", "must be finite"),
    ("low-huge-int", setp("space.momentum.low", -(10**400)), "space.momentum.low", "finite"),
    ("low-str", setp("space.lr.low", "1e-5"), "space.lr.low", "must be a number"),
    ("low-bool", setp("space.momentum.low", False), "space.momentum.low", "must be a number"),
    ("low-list", setp("space.momentum.low", [0]), "space.momentum.low", "must be a number"),
    (
        "span-overflow",
        setp("space.momentum", {"type": "uniform", "low": -1.7e308, "high": 1.7e308}),
        "space.momentum.high",
        "high - low must be finite",
    ),
    ("param-typo", setp("space.lr.lowe", 1), "space.lr.lowe", "unknown field"),
    ("values-in-uniform", setp("space.momentum.values", [1]), "space.momentum.values", "type"),
    ("log-in-uniform", setp("space.momentum.log", True), "space.momentum.log", "not valid"),
    ("points-1", setp("space.lr.points", 1), "space.lr.points", "2..1000"),
    ("points-big", setp("space.lr.points", 1001), "space.lr.points", "2..1000"),
    ("points-float", setp("space.lr.points", 2.0), "space.lr.points", "integer"),
    ("points-in-int", setp("space.step_size.points", 3), "space.step_size.points", "not valid"),
    ("int-low-float", setp("space.step_size.low", 1.0), "space.step_size.low", "integer"),
    ("int-high-frac", setp("space.step_size.high", 50.5), "space.step_size.high", "integer"),
    ("int-low-gt-high", setp("space.step_size.low", 51), "space.step_size.high", ">= low"),
    ("int-huge", setp("space.step_size.high", 10**20), "space.step_size.high", "integer in"),
    ("int-bool", setp("space.step_size.low", True), "space.step_size.low", "integer"),
    (
        "int-log-low-0",
        many(setp("space.step_size.log", True), setp("space.step_size.low", 0)),
        "space.step_size.low",
        ">= 1 when log",
    ),
    ("int-log-str", setp("space.step_size.log", "yes"), "space.step_size.log", "true or false"),
    ("int-values", setp("space.step_size.values", [1]), "space.step_size.values", "not valid"),
    ("choice-missing", setp("space.optimizer.values", DELETE), "space.optimizer.values", "requ"),
    ("choice-empty", setp("space.optimizer.values", []), "space.optimizer.values", "not be empty"),
    ("choice-str", setp("space.optimizer.values", "sgd"), "space.optimizer.values", "a list"),
    (
        "choice-dup",
        setp("space.optimizer.values", ["a", "b", "a"]),
        "space.optimizer.values[2]",
        "duplicate",
    ),
    (
        "choice-dup-num",
        setp("space.optimizer.values", [1, 1.0]),
        "space.optimizer.values[1]",
        "duplicate",
    ),
    (
        "choice-none",
        setp("space.optimizer.values", ["a", None]),
        "space.optimizer.values[1]",
        "string, number or boolean",
    ),
    (
        "choice-dict",
        setp("space.optimizer.values", [{"a": 1}]),
        "space.optimizer.values[0]",
        "string, number or boolean",
    ),
    (
        "choice-nan",
        setp("space.optimizer.values", [1.0, NAN]),
        "space.optimizer.values[1]",
        "finite",
    ),
    ("choice-inf", setp("space.optimizer.values", [-INF]), "space.optimizer.values[0]", "finite"),
    (
        "choice-huge-int",
        setp("space.optimizer.values", [2**64]),
        "space.optimizer.values[0]",
        "64-bit",
    ),
    (
        "choice-too-many",
        setp("space.optimizer.values", list(range(1001))),
        "space.optimizer.values",
        "at most 1000",
    ),
    (
        "choice-deep",
        setp("space.optimizer.values", deep_list(10_000)),
        "space.optimizer.values[0]",
        "string, number or boolean",
    ),
    ("choice-low", setp("space.optimizer.low", 1), "space.optimizer.low", "not valid"),
    (
        "grid-int-range",
        many(GRID, setp("space.step_size.high", 5000)),
        "space.step_size",
        "int range too large for the grid sampler",
    ),
    (
        "grid-too-big",
        many(
            GRID, setp("space.optimizer.values", list(range(1000))), setp("space.lr.points", 1000)
        ),
        "space",
        "too many points",
    ),
    ("deep-dict-param", setp("space.lr", deep_dict(10_000)), "space.lr.a", "unknown field"),
    # --- resources
    ("resources-list", setp("resources", []), "resources", "must be a table"),
    ("gpus-9", setp("resources.gpus_per_trial", 9), "resources.gpus_per_trial", "0..8"),
    ("gpus-neg", setp("resources.gpus_per_trial", -1), "resources.gpus_per_trial", "0..8"),
    ("gpus-half", setp("resources.gpus_per_trial", 0.5), "resources.gpus_per_trial", "integer"),
    ("concurrent-0", setp("resources.max_concurrent", 0), "resources.max_concurrent", "1..4096"),
    ("concurrent-big", setp("resources.max_concurrent", 5000), "resources.max_concurrent", "1.."),
    ("mem-neg", setp("resources.min_free_memory_mb", -1), "resources.min_free_memory_mb", ">="),
    (
        "mem-float",
        setp("resources.min_free_memory_mb", 1e3),
        "resources.min_free_memory_mb",
        "integer",
    ),
    ("resources-typo", setp("resources.gpus", 1), "resources.gpus", "unknown field"),
    # --- subset
    ("subset-str", setp("subset", "gradmatch"), "subset", "must be a table"),
    ("strategy", setp("subset.strategy", "glister"), "subset.strategy", "must be one of"),
    ("fraction-0", setp("subset.fraction", 0), "subset.fraction", "> 0 and <= 1"),
    ("fraction-1.5", setp("subset.fraction", 1.5), "subset.fraction", "> 0 and <= 1"),
    ("fraction-nan", setp("subset.fraction", NAN), "subset.fraction", "finite"),
    ("fraction-str", setp("subset.fraction", "0.1"), "subset.fraction", "number"),
    ("fraction-1-with-strategy", setp("subset.fraction", 1), "subset.fraction", "must be < 1"),
    ("fraction-without-strategy", setp("subset.strategy", "none"), "subset.fraction", "strategy"),
    (
        "per-batch-craig",
        many(setp("subset.strategy", "craig"), setp("subset.per_batch", True)),
        "subset.per_batch",
        "only valid with strategy 'gradmatch'",
    ),
    ("per-batch-str", setp("subset.per_batch", "true"), "subset.per_batch", "true or false"),
    ("select-every-0", setp("subset.select_every", 0), "subset.select_every", ">= 1"),
    ("select-every-float", setp("subset.select_every", 2.5), "subset.select_every", "integer"),
    ("subset-typo", setp("subset.every", 2), "subset.every", "unknown field"),
    # --- limits
    ("restarts-101", setp("limits.max_restarts", 101), "limits.max_restarts", "0..100"),
    ("restarts-neg", setp("limits.max_restarts", -1), "limits.max_restarts", "0..100"),
    ("restarts-float", setp("limits.max_restarts", 1.0), "limits.max_restarts", "integer"),
    ("timeout-0", setp("limits.progress_timeout_s", 0), "limits.progress_timeout_s", "> 0"),
    ("timeout-neg", setp("limits.progress_timeout_s", -5), "limits.progress_timeout_s", "> 0"),
    ("timeout-inf", setp("limits.progress_timeout_s", INF), "limits.progress_timeout_s", "finite"),
    ("timeout-nan", setp("limits.progress_timeout_s", NAN), "limits.progress_timeout_s", "finite"),
    (
        "timeout-huge-int",
        setp("limits.progress_timeout_s", 10**400),
        "limits.progress_timeout_s",
        "finite",
    ),
    ("timeout-big", setp("limits.progress_timeout_s", 1e10), "limits.progress_timeout_s", "<="),
    ("timeout-str", setp("limits.progress_timeout_s", "600"), "limits.progress_timeout_s", "num"),
    ("limits-typo", setp("limits.max_restart", 3), "limits.max_restart", "unknown field"),
    # --- env
    ("env-list", setp("env", ["A=1"]), "env", "must be a table"),
    ("env-hpd", setp("env.HPD_TOKEN", "x"), "env.HPD_TOKEN", "reserved"),
    ("env-cuda", setp("env.CUDA_VISIBLE_DEVICES", "0"), "env.CUDA_VISIBLE_DEVICES", "hpd"),
    ("env-lower", setp("env.path", "/bin"), "env.path", "must match"),
    ("env-eq", setp("env.A=B", "1"), "env.'A=B'", "must match"),
    ("env-int-value", setp("env.FOO", 3), "env.FOO", "must be a string"),
    ("env-nul", setp("env.FOO", "a\x00"), "env.FOO", "NUL"),
    ("env-too-many", setp("env", {f"V{i}": "x" for i in range(300)}), "env", "at most 256"),
]


def test_there_are_at_least_100_cases() -> None:
    assert len(CASES) >= 100
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("mutation", "path", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed(mutation: Mutation, path: str, words: str) -> None:
    data = mutation(copy.deepcopy(VALID))
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    errors = info.value.errors
    hits = [e for e in errors if e.startswith(path + ": ")]
    assert hits, f"no error names {path!r}: {errors}"
    assert any(words in e for e in hits), f"{words!r} not in {hits}"
    assert all("\n" not in e and len(e) < 600 for e in errors)


def test_the_valid_base_is_valid() -> None:
    assert isinstance(parse_spec(copy.deepcopy(VALID)), Spec)


# --------------------------------------------------------------------------- text-level input

VALID_TOML = """
name = "t"
metric = "loss"
mode = "min"
entrypoint = "a.b:c"
[space.lr]
type = "loguniform"
low = 1e-5
high = 0.5
"""
VALID_JSON = json.dumps(
    {
        "name": "t",
        "metric": "loss",
        "mode": "min",
        "entrypoint": "a.b:c",
        "space": {"lr": {"type": "loguniform", "low": 1e-5, "high": 0.5}},
    }
)
VALID_YAML = """
name: t
metric: loss
mode: min
entrypoint: a.b:c
space:
  lr: {type: loguniform, low: 1e-5, high: 0.5}
"""

TEXT_CASES: list[tuple[str, str | bytes, str, str]] = [
    ("utf8-toml", VALID_TOML.encode() + b"\n# \xff\xfe", "toml", "spec: invalid UTF-8"),
    ("utf8-json", b'{"name": "\xc3\x28"}', "json", "spec: invalid UTF-8"),
    ("utf8-yaml", b"name: \xed\xa0\x80", "yaml", "spec: invalid UTF-8"),
    ("toml-syntax", "name = ", "toml", "spec: invalid TOML"),
    ("toml-dup", 'name = "u"\n' + VALID_TOML, "toml", "spec: invalid TOML"),
    ("toml-deep", "x = " + "[" * 10_000 + "]" * 10_000, "toml", "spec: invalid TOML"),
    ("toml-huge-int", "seed = 1" + "0" * 5000, "toml", "spec: invalid TOML"),
    ("toml-nan", VALID_TOML.replace("high = 0.5", "high = nan"), "toml", "space.lr.high"),
    ("toml-inf", VALID_TOML.replace("high = 0.5", "high = inf"), "toml", "space.lr.high"),
    ("toml-date", VALID_TOML.replace('name = "t"', "name = 1979-05-27"), "toml", "name"),
    ("toml-float-seed", "seed = 1.0\n" + VALID_TOML, "toml", "seed"),
    ("json-syntax", "{", "json", "spec: invalid JSON"),
    ("json-list", "[1, 2]", "json", "spec: the top level must be a table"),
    ("json-null", "null", "json", "spec: the top level must be a table"),
    ("json-dup", '{"name": "a", "name": "b"}', "json", "spec: invalid JSON: duplicate key"),
    ("json-deep", "[" * 100_000 + "]" * 100_000, "json", "spec: invalid JSON"),
    (
        "json-deep-value",
        VALID_JSON[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}",
        "json",
        "spec: invalid JSON",
    ),
    ("json-huge-int", '{"seed": 1' + "0" * 5000 + "}", "json", "spec: invalid JSON"),
    ("json-NaN", VALID_JSON.replace("0.5", "NaN"), "json", "space.lr.high"),
    ("json-Infinity", VALID_JSON.replace("1e-05", "-Infinity"), "json", "space.lr.low"),
    ("json-10MB", '{"name": "' + "x" * 10_000_000 + '"}', "json", "spec: too large"),
    ("json-surrogate", VALID_JSON.replace('"t"', '"\\ud800"'), "json", "name"),
    ("yaml-syntax", "name: [", "yaml", "spec: invalid YAML"),
    ("yaml-scalar", "just a string", "yaml", "spec: the top level must be a table"),
    ("yaml-empty", "", "yaml", "spec: the top level must be a table"),
    ("yaml-python-tag", "!!python/object/apply:os.system ['true']", "yaml", "spec: invalid YAML"),
    ("yaml-python-name", "name: !!python/name:os.system", "yaml", "spec: invalid YAML"),
    ("yaml-dup", VALID_YAML + "name: u\n", "yaml", "spec: invalid YAML: duplicate key"),
    ("yaml-deep", "[" * 10_000 + "]" * 10_000, "yaml", "spec: invalid YAML: nested too deeply"),
    ("yaml-17-deep", "x: " + "[" * 17 + "]" * 17, "yaml", "spec: invalid YAML: nested too deeply"),
    ("yaml-deep-block", "".join("  " * i + f"k{i}:\n" for i in range(180)), "yaml", "k0: unknown"),
    (
        "yaml-100KB",
        VALID_YAML + "#" * 100_000,
        "yaml",
        "spec: too large (max 65536 bytes for YAML)",
    ),
    ("yaml-on-nan-no", VALID_YAML + "searcher: {on_nan: no}\n", "yaml", "searcher.on_nan"),
    ("yaml-binary", VALID_YAML.replace("name: t", "name: !!binary aGk="), "yaml", "name"),
    ("yaml-set", VALID_YAML + "command: !!set {a, b}\n", "yaml", "command"),
    ("yaml-bad-date", "name: 2001-13-45", "yaml", "spec: invalid YAML"),
    ("yaml-control-char", "name: a\x07b", "yaml", "spec: invalid YAML"),
    ("yaml-bool-key", VALID_YAML + "yes: 1\n", "yaml", "spec: field names must be strings"),
    (
        "yaml-billion-laughs",
        'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
        + "".join(
            f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]\n"
            for p, n in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "name: *i\n",
        "yaml",
        "name",
    ),
    ("unknown-format", "{}", "ini", "spec: unknown spec format"),
]


def test_there_are_text_cases() -> None:
    assert len(TEXT_CASES) >= 30
    assert len(CASES) + len(TEXT_CASES) >= 200


@pytest.mark.parametrize(
    ("text", "fmt", "prefix"), [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES]
)
def test_malformed_text(text: str | bytes, fmt: str, prefix: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_text(text, fmt)  # type: ignore[arg-type]
    errors = info.value.errors
    assert any(e.startswith(prefix) for e in errors), errors
    assert all("\n" not in e and len(e) < 600 for e in errors)


@pytest.mark.parametrize(
    ("text", "fmt"), [(VALID_TOML, "toml"), (VALID_JSON, "json"), (VALID_YAML, "yaml")]
)
def test_the_valid_texts_are_valid(text: str, fmt: str) -> None:
    assert parse_spec_text(text, fmt).space[0].low == 1e-5  # type: ignore[arg-type]


# --------------------------------------------------------------------------- mutation fuzzing

TOP_PREFIXES = (
    "spec:",
    "name:",
    "metric:",
    "mode:",
    "seed:",
    "entrypoint:",
    "command:",
    "command[",
    "workdir:",
    "searcher:",
    "searcher.",
    "space:",
    "space.",
    "resources:",
    "resources.",
    "subset:",
    "subset.",
    "limits:",
    "limits.",
    "env:",
    "env.",
)


def _paths(node: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    return out


PATHS = _paths(VALID)
INTERESTING: list[object] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    3,
    8,
    9,
    1000,
    1001,
    100_000,
    100_001,
    2**63 - 1,
    2**63,
    -(2**63),
    10**400,
    0.0,
    -0.0,
    0.5,
    1.0,
    1.5,
    1e-5,
    1e308,
    -1e308,
    5e-324,
    NAN,
    INF,
    -INF,
    "",
    "x",
    "a:b",
    "python train.py",
    "hpd_x",
    "tpe",
    "grid",
    "random",
    "asha",
    "hyperband",
    "none",
    "gradmatch",
    "craig",
    "int",
    "choice",
    "uniform",
    "loguniform",
    "\x00",
    "\ud800",
    "a\nb",
    "x" * 5000,
    [],
    [1],
    ["a", "a"],
    ["python"],
    [None],
    [[[]]],
    {},
    {"type": "int"},
    {"type": "choice", "values": [1, 2]},
    {"type": "uniform", "low": 0, "high": 1},
    {"low": 1, "high": 0},
    deep_list(2000),
    deep_dict(2000),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
values = st.sampled_from(INTERESTING) | json_values
# one mutation: (which path, what to do, the value); ops: 0 set, 1 delete, 2 add a key, 3 wrap
mutations = st.lists(
    st.tuples(st.sampled_from(PATHS), st.integers(0, 3), values, st.text(max_size=6)),
    min_size=1,
    max_size=3,
)


def _mutate(data: dict[str, Any], muts: list[tuple[tuple[str, ...], int, object, str]]) -> object:
    for path, op, value, key in muts:
        node: dict[str, Any] | None = data
        for k in path[:-1]:  # copy on the way down: values may be shared (INTERESTING)
            child = node.get(k) if node is not None else None
            if node is None or not isinstance(child, dict):
                node = None
                break
            node[k] = dict(child)
            node = node[k]
        if node is None:
            continue
        last = path[-1]
        if op == 0:
            node[last] = value
        elif op == 1:
            node.pop(last, None)
        elif op == 2 and isinstance(node.get(last), dict):
            node[last] = {**node[last], key: value}
        elif op == 3:
            node[last] = [node.get(last)]
    return data


def _check_errors(errors: list[str]) -> None:
    assert errors
    for err in errors:
        assert err.startswith(TOP_PREFIXES) or err.endswith(": unknown field"), err
        assert "\n" not in err


def _check(data: object) -> None:
    try:
        result = parse_spec(data)
    except SpecError as e:
        errors = e.errors
    else:
        assert isinstance(result, Spec)
        hash(result)
        return
    _check_errors(errors)


FUZZ = settings(
    deadline=None,
    derandomize=True,  # reproducible in CI
    database=None,
    suppress_health_check=list(HealthCheck),
)


# 1,000 specs from a shrinkable hypothesis strategy (~6 ms each, mostly hypothesis drawing)
@settings(FUZZ, max_examples=1_000)
@given(mutations)
def test_fuzz_mutations_only_raise_spec_error(
    muts: list[tuple[tuple[str, ...], int, object, str]],
) -> None:
    _check(_mutate(copy.deepcopy(VALID), muts))


_ALPHABET = "aZ_09.-: /\\\n\t\x00\x7f\u00e9\u03bb\ud800\U0001f600'\"[]{}="


def _random_value(rng: random.Random, budget: int = 4) -> object:
    """A random JSON-like value (plus NaN/inf and huge ints), at most ``budget`` deep."""
    kind = rng.randrange(9 if budget > 0 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(10 ** rng.choice([1, 3, 10, 19, 30])), 10 ** rng.choice([1, 3, 19]))
    if kind == 2:
        return rng.choice([NAN, INF, -INF, 0.0, -0.0, 5e-324, rng.uniform(-2, 2), 1e308])
    if kind == 3:
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(12)))
    if kind in (4, 5):
        return rng.choice(INTERESTING)
    if kind == 6:
        return [_random_value(rng, budget - 1) for _ in range(rng.randrange(4))]
    keys = [*FIELD_NAMES, *("", "x", "λ", "a b")]
    return {rng.choice(keys): _random_value(rng, budget - 1) for _ in range(rng.randrange(4))}


FIELD_NAMES = sorted({k for path in PATHS for k in path} | {"type", "values", "points", "log"})


def _random_mutations(rng: random.Random) -> list[tuple[tuple[str, ...], int, object, str]]:
    return [
        (rng.choice(PATHS), rng.randrange(4), _random_value(rng), rng.choice([*FIELD_NAMES, "zz"]))
        for _ in range(rng.randint(1, 3))
    ]


# ...and 10,000 from a seeded generator (hypothesis draws only the seed, so each costs ~1 ms).
# A failure prints the seed: _random_mutations(random.Random(seed)) replays it.
@settings(FUZZ, max_examples=10_000)
@given(st.integers(0, 2**64 - 1))
def test_fuzz_10000_seeded_mutations_only_raise_spec_error(seed: int) -> None:
    _check(_mutate(copy.deepcopy(VALID), _random_mutations(random.Random(seed))))


@settings(FUZZ, max_examples=1_000)
@given(
    st.sampled_from(["toml", "json", "yaml"]),
    st.integers(0, 400),
    st.binary(max_size=8),
    st.integers(0, 8),
)
def test_fuzz_text_only_raises_spec_error(fmt: str, at: int, insert: bytes, cut: int) -> None:
    base = {"toml": VALID_TOML, "json": VALID_JSON, "yaml": VALID_YAML}[fmt].encode()
    at = min(at, len(base))
    text = base[:at] + insert + base[at + cut :]
    try:
        parse_spec_text(text, fmt)  # type: ignore[arg-type]
    except SpecError as e:
        errors = e.errors
    else:
        return
    _check_errors(errors)
