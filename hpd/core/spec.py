"""The search spec: schema, strict validation, parsing and canonical form.

Owns the frozen dataclasses that describe a search (``Spec`` and its parts), their validation
with field-path errors (``searcher.eta: must be an integer >= 2, got 1.5``), parsing TOML, YAML
and JSON text, and the canonical JSON-able dict (``spec_to_dict``) that round-trips through
``parse_spec``.

It must never: touch the filesystem (except ``load_spec_file``, which reads the one file it is
given; ``base_dir`` handling is pure string work), read a clock, import asyncio, execute or
construct anything from the input (YAML goes through a ``yaml.SafeLoader``), recurse into input
beyond the schema's own depth, or raise anything but ``SpecError`` for bad input. Every problem
found is reported, not just the first.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from itertools import islice
from typing import Final, Literal, cast

import yaml

from hpd.errors import SpecError

__all__ = [
    "GRID_DEFAULT_POINTS",
    "Brackets",
    "LimitsSpec",
    "Mode",
    "OnNan",
    "ParamSpec",
    "ParamType",
    "ResourcesSpec",
    "SamplerName",
    "Scalar",
    "SearcherName",
    "SearcherSpec",
    "Spec",
    "Strategy",
    "SubsetSpec",
    "TpeOptions",
    "load_spec_file",
    "parse_spec",
    "parse_spec_text",
    "spec_to_dict",
]

Scalar = str | int | float | bool
ParamType = Literal["uniform", "loguniform", "int", "choice"]
SearcherName = Literal["asha", "hyperband", "sha", "random"]
Brackets = Literal["aggressive", "standard", "conservative"]
SamplerName = Literal["random", "grid", "fixed", "tpe"]
OnNan = Literal["stop", "retry"]
Strategy = Literal["none", "random", "gradmatch", "craig"]
Mode = Literal["max", "min"]

GRID_DEFAULT_POINTS: Final = 5
"""Grid points for a uniform/loguniform parameter without ``points``."""


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: ParamType
    low: float | int | None = None  # uniform/loguniform (float), int (int)
    high: float | int | None = None
    values: tuple[Scalar, ...] | None = None  # choice
    log: bool = False  # int only: sample log-uniformly
    points: int | None = None  # grid sampler: points for uniform/loguniform (default 5)


@dataclass(frozen=True, slots=True)
class TpeOptions:
    """``searcher.sampler_options`` of the ``tpe`` sampler (Optuna's TPESampler arguments)."""

    # The model proposes once this many trials have a rung result; before, random proposals
    # (the very ones ``sampler = "random"`` draws). Optuna's n_startup_trials default.
    n_startup: int = 10
    multivariate: bool = True  # one joint density over all parameters (Falkner et al., BOHB)
    constant_liar: bool = True  # running trials count as bad results: no duplicate proposals
    n_ei_candidates: int = 24  # candidates drawn from the good density, best l/g ratio wins


@dataclass(frozen=True, slots=True)
class SearcherSpec:
    name: SearcherName = "asha"
    max_trials: int = 16
    min_resource: int = 1
    max_resource: int = 9
    eta: int = 3
    brackets: Brackets = "aggressive"  # parse_spec: "conservative" for hyperband when not given
    sampler: SamplerName = "random"
    on_nan: OnNan = "stop"
    sampler_options: TpeOptions | None = None  # set (defaults resolved) iff sampler == "tpe"


@dataclass(frozen=True, slots=True)
class ResourcesSpec:
    gpus_per_trial: int = 1  # 0 = CPU trial
    max_concurrent: int = 8
    min_free_memory_mb: int = 0


@dataclass(frozen=True, slots=True)
class SubsetSpec:
    strategy: Strategy = "none"
    fraction: float = 1.0
    select_every: int = 20
    per_batch: bool = False  # per-batch GradMatch


@dataclass(frozen=True, slots=True)
class LimitsSpec:
    max_restarts: int = 3
    progress_timeout_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    metric: str
    mode: Mode
    seed: int
    entrypoint: str | None
    command: tuple[str, ...] | None
    workdir: str
    searcher: SearcherSpec
    space: tuple[ParamSpec, ...]
    resources: ResourcesSpec
    subset: SubsetSpec
    limits: LimitsSpec
    env: tuple[tuple[str, str], ...] = ()  # sorted by name
    # Configurations evaluated first, in order (then the sampler; only these when the sampler
    # is "fixed"). Each is (name, value) pairs in the order of ``space``.
    configs: tuple[tuple[tuple[str, Scalar], ...], ...] = ()


# --------------------------------------------------------------------------------------------
# Limits of the schema
# --------------------------------------------------------------------------------------------

MAX_SPEC_BYTES: Final = 1 << 20  # text/file size accepted by parse_spec_text/load_spec_file
# PyYAML is pure Python and slow (~1 s per 64 KiB of worst-case input, and its scanner is
# O(tokens x flow depth)), so YAML gets a smaller size cap and a bracket-depth cap.
MAX_YAML_BYTES: Final = 64 << 10
MAX_YAML_DEPTH: Final = 16
MAX_ERRORS: Final = 200  # errors kept; the rest are counted in one last line
MAX_NAME_LEN: Final = 128
MAX_METRIC_LEN: Final = 128
MAX_ENTRYPOINT_LEN: Final = 512
MAX_ARGS: Final = 256
MAX_ARG_LEN: Final = 4096
MAX_PATH_LEN: Final = 4096
MAX_PARAMS: Final = 1000
MAX_PARAM_NAME_LEN: Final = 64
MAX_CHOICES: Final = 1000
MAX_CHOICE_STR_LEN: Final = 1024
MAX_INT_PARAM: Final = 10**15  # |low|, |high| of int parameters
MAX_ENV: Final = 256
MAX_ENV_NAME_LEN: Final = 128
MAX_ENV_VALUE_LEN: Final = 32768
MAX_GRID_INT_VALUES: Final = 1000
MAX_GRID_POINTS: Final = 1000  # `points` of one uniform/loguniform parameter
MAX_GRID_SIZE: Final = 1_000_000
MAX_CONFIGS: Final = 100_000
INT64_MAX: Final = 2**63 - 1

_PARAM_TYPES: Final = ("uniform", "loguniform", "int", "choice")
_SEARCHERS: Final = ("asha", "hyperband", "sha", "random")
_BRACKETS: Final = ("aggressive", "standard", "conservative")
_SAMPLERS: Final = ("random", "grid", "fixed", "tpe")
_ON_NAN: Final = ("stop", "retry")
_STRATEGIES: Final = ("none", "random", "gradmatch", "craig")
_MODES: Final = ("max", "min")

_IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_METRIC_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*", re.ASCII)
_DOTTED: Final = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_ENTRYPOINT_RE: Final = re.compile(f"{_DOTTED}:{_DOTTED}", re.ASCII)
_ENV_NAME_RE: Final = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)
_PLAIN_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)

_TOP_FIELDS: Final = (
    "name",
    "metric",
    "mode",
    "seed",
    "entrypoint",
    "command",
    "workdir",
    "searcher",
    "space",
    "resources",
    "subset",
    "limits",
    "env",
    "configs",
)
_PARAM_FIELDS: Final = {
    "uniform": ("type", "low", "high", "points"),
    "loguniform": ("type", "low", "high", "points"),
    "int": ("type", "low", "high", "log"),
    "choice": ("type", "values"),
}
_ALL_PARAM_FIELDS: Final = ("type", "low", "high", "values", "log", "points")


# --------------------------------------------------------------------------------------------
# Error collection and safe display of bad values
# --------------------------------------------------------------------------------------------


class _Missing:
    """Marks 'no value to show' in an error."""


_NO_VALUE: Final = _Missing()
_SHOW_STR: Final = 60
_SHOW_ITEMS: Final = 5


def _show(value: object, depth: int = 0) -> str:
    """A short, single-line, bounded repr: safe on huge ints, long strings, deep nesting."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        bits = value.bit_length()
        return repr(int(value)) if bits <= 128 else f"<integer of {bits} bits>"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str | bytes):
        if len(value) > _SHOW_STR:
            return f"{value[:_SHOW_STR]!r}... ({len(value)} long)"
        return repr(value)
    if isinstance(value, list | tuple | Mapping):
        return _show_container(value, depth)
    try:
        text = repr(value)
    except Exception:  # a foreign object with a broken __repr__
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", " ")
    return text if len(text) <= 2 * _SHOW_STR else text[: 2 * _SHOW_STR] + "..."


def _show_container(
    value: list[object] | tuple[object, ...] | Mapping[object, object], depth: int
) -> str:
    kind, opening, closing = (
        ("table", "{", "}") if isinstance(value, Mapping) else ("list", "[", "]")
    )
    if depth >= 2:
        return f"<{kind} of {len(value)}>"
    if isinstance(value, Mapping):
        shown = [
            f"{_show(k, depth + 1)}: {_show(v, depth + 1)}"
            for k, v in islice(value.items(), _SHOW_ITEMS)
        ]
    else:
        shown = [_show(v, depth + 1) for v in value[:_SHOW_ITEMS]]
    if len(value) > _SHOW_ITEMS:
        shown.append(f"... ({len(value)} items)")
    return opening + ", ".join(shown) + closing


def _key_text(key: str) -> str:
    """A key as it appears in a field path: plain if simple, else quoted and bounded."""
    return key if _PLAIN_KEY_RE.fullmatch(key) else _show(key)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Errors:
    """Collects every problem as 'field.path: message[, got <value>]'."""

    __slots__ = ("bad", "dropped", "items")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.bad: set[str] = set()
        self.dropped = 0

    def add(self, path: str, msg: str, value: object = _NO_VALUE) -> None:
        path = path or "spec"
        self.bad.add(path)
        if len(self.items) >= MAX_ERRORS:
            self.dropped += 1
            return
        text = f"{path}: {msg}"
        if value is not _NO_VALUE:
            text += f", got {_show(value)}"
        self.items.append(text)

    def ok(self, *paths: str) -> bool:
        """True if none of ``paths`` has an error (guards cross-field checks)."""
        return not any(p in self.bad for p in paths)

    def ok_under(self, path: str) -> bool:
        """True if neither ``path`` nor anything below it has an error."""
        prefix = path + "."
        return path not in self.bad and not any(b.startswith(prefix) for b in self.bad)

    def error(self) -> SpecError:
        items = list(self.items)
        if self.dropped:
            items.append(f"spec: {self.dropped} more errors not shown")
        return SpecError(items)


# --------------------------------------------------------------------------------------------
# Field readers: each validates one field, records errors, and returns a usable value
# (the default when invalid, so parsing goes on and finds every other error).
# --------------------------------------------------------------------------------------------


def _table(errs: _Errors, raw: object, path: str, known: Collection[str]) -> dict[str, object]:
    """The known fields of a table; an error for a non-table and for every unknown key."""
    if not isinstance(raw, Mapping):
        errs.add(path, "must be a table (mapping)", raw)
        return {}
    out: dict[str, object] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            errs.add(path, "field names must be strings", key)
        elif key in known:
            out[key] = value
        else:
            errs.add(_join(path, _key_text(key)), "unknown field")
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(
    errs: _Errors,
    tbl: Mapping[str, object],
    path: str,
    key: str,
    default: int,
    lo: int,
    hi: int,
    *,
    cap: bool = False,
) -> int:
    """An integer in lo..hi. ``cap``: hi is a sanity cap, so messages say '>= lo'/'<= hi'."""
    if key not in tbl:
        return default
    p, v = _join(path, key), tbl[key]
    desc = f">= {lo}" if cap else f"in {lo}..{hi}"
    if not _is_int(v):
        errs.add(p, f"must be an integer {desc}", v)
        return default
    n = int(cast(int, v))
    if n < lo:
        errs.add(p, f"must be an integer {desc}", n)
    elif n > hi:
        errs.add(p, f"must be an integer {'<= ' + str(hi) if cap else desc}", n)
    else:
        return n
    return default


def _finite(errs: _Errors, p: str, v: object, what: str) -> float | None:
    """``v`` as a finite float, or None after recording why not."""
    if not _is_num(v):
        errs.add(p, f"must be {what}", v)
        return None
    try:
        f = float(cast(float, v))
    except OverflowError:  # an int beyond float range
        errs.add(p, "must be finite", v)
        return None
    if not math.isfinite(f):
        errs.add(p, "must be finite", f)
        return None
    return f


def _float(
    errs: _Errors,
    tbl: Mapping[str, object],
    path: str,
    key: str,
    default: float,
    *,
    gt: float,
    le: float,
) -> float:
    """A finite number with gt < x <= le (ints accepted, stored as float)."""
    if key not in tbl:
        return default
    p = _join(path, key)
    desc = f"> {gt:g} and <= {le:g}"
    f = _finite(errs, p, tbl[key], f"a number {desc}")
    if f is None:
        return default
    if not gt < f <= le:
        errs.add(p, f"must be {desc}", f)
        return default
    return f


def _bool(errs: _Errors, tbl: Mapping[str, object], path: str, key: str, default: bool) -> bool:
    if key not in tbl:
        return default
    v = tbl[key]
    if not isinstance(v, bool):
        errs.add(_join(path, key), "must be true or false", v)
        return default
    return v


def _enum(
    errs: _Errors,
    tbl: Mapping[str, object],
    path: str,
    key: str,
    default: str,
    options: tuple[str, ...],
) -> str:
    if key not in tbl:
        return default
    v = tbl[key]
    if not isinstance(v, str) or v not in options:
        errs.add(_join(path, key), "must be one of " + ", ".join(map(repr, options)), v)
        return default
    return str(v)


def _text(errs: _Errors, p: str, v: object, max_len: int, *, empty_ok: bool = False) -> bool:
    """Common string checks: a str, length, no NUL, encodable as UTF-8 (no lone surrogates)."""
    if not isinstance(v, str):
        errs.add(p, "must be a string", v)
        return False
    if not v and not empty_ok:
        errs.add(p, "must not be empty", v)
        return False
    if len(v) > max_len:
        errs.add(p, f"must be at most {max_len} characters", v)
        return False
    if "\x00" in v:
        errs.add(p, "must not contain NUL bytes", v)
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        errs.add(p, "must be valid Unicode (no lone surrogates)", v)
        return False
    return True


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def _required_text(errs: _Errors, top: Mapping[str, object], key: str, max_len: int) -> str | None:
    """A required top-level string field, or None (with its error recorded)."""
    if key not in top:
        errs.add(key, "is required")
        return None
    v = top[key]
    return str(v) if _text(errs, key, v, max_len) else None


def _name(errs: _Errors, top: Mapping[str, object]) -> str:
    s = _required_text(errs, top, "name", MAX_NAME_LEN)
    if s is None:
        return ""
    if not s.isprintable():
        errs.add("name", "must be printable (no newlines or control characters)", s)
    return s


def _metric(errs: _Errors, top: Mapping[str, object]) -> str:
    s = _required_text(errs, top, "metric", MAX_METRIC_LEN)
    if s is None:
        return ""
    if not _METRIC_RE.fullmatch(s):
        errs.add("metric", "must match [A-Za-z_][A-Za-z0-9_.-]*", s)
    elif s.startswith("hpd_"):
        errs.add("metric", "must not start with 'hpd_' (reserved for hpd)", s)
    return s


def _mode(errs: _Errors, top: Mapping[str, object]) -> Mode:
    if "mode" not in top:
        errs.add("mode", "is required")
        return "max"
    return cast(Mode, _enum(errs, top, "", "mode", "max", _MODES))


def _entrypoint(errs: _Errors, v: object) -> str | None:
    if not _text(errs, "entrypoint", v, MAX_ENTRYPOINT_LEN):
        return None
    s = str(v)
    if not _ENTRYPOINT_RE.fullmatch(s):
        errs.add("entrypoint", "must look like 'package.module:function'", s)
    return s


def _command(errs: _Errors, v: object) -> tuple[str, ...] | None:
    if isinstance(v, str):
        errs.add("command", "must be a list of strings (argv), not a shell string", v)
        return None
    if not isinstance(v, list | tuple):
        errs.add("command", "must be a list of strings (argv)", v)
        return None
    if not v:
        errs.add("command", "must not be empty", v)
        return None
    if len(v) > MAX_ARGS:
        errs.add("command", f"must have at most {MAX_ARGS} arguments", len(v))
        return None
    args: list[str] = []
    for i, arg in enumerate(v):
        if _text(errs, f"command[{i}]", arg, MAX_ARG_LEN, empty_ok=i > 0):
            args.append(str(arg))
    return tuple(args)


def _program(errs: _Errors, top: Mapping[str, object]) -> tuple[str | None, tuple[str, ...] | None]:
    # null (JSON/YAML/Python None) counts as absent for these two optional fields
    ep_raw, cmd_raw = top.get("entrypoint"), top.get("command")
    if (ep_raw is None) == (cmd_raw is None):
        errs.add("entrypoint", "exactly one of entrypoint or command is required")
    ep = None if ep_raw is None else _entrypoint(errs, ep_raw)
    cmd = None if cmd_raw is None else _command(errs, cmd_raw)
    return ep, cmd


def _workdir(errs: _Errors, top: Mapping[str, object], base_dir: str | None) -> str:
    v = top.get("workdir", ".")
    if not _text(errs, "workdir", v, MAX_PATH_LEN):
        return "."
    s = str(v)
    if base_dir is not None and not os.path.isabs(s):
        s = os.path.normpath(os.path.join(base_dir, s))
    return s


def _searcher(errs: _Errors, raw: object) -> SearcherSpec:
    p = "searcher"
    t = _table(errs, raw, p, [f.name for f in fields(SearcherSpec)])
    d = SearcherSpec()
    name = _enum(errs, t, p, "name", d.name, _SEARCHERS)
    max_trials = _int(errs, t, p, "max_trials", d.max_trials, 1, 100_000)
    min_resource = _int(errs, t, p, "min_resource", d.min_resource, 1, 10**9, cap=True)
    max_resource = _int(errs, t, p, "max_resource", d.max_resource, 1, 10**9, cap=True)
    eta = _int(errs, t, p, "eta", d.eta, 2, 1000, cap=True)
    # Determined's default for hyperband; asha/sha/random default to one bracket
    default_brackets = "conservative" if name == "hyperband" else d.brackets
    brackets = _enum(errs, t, p, "brackets", default_brackets, _BRACKETS)
    sampler = _enum(errs, t, p, "sampler", d.sampler, _SAMPLERS)
    options = _sampler_options(errs, t, sampler)
    spec = SearcherSpec(
        name=cast(SearcherName, name),
        max_trials=max_trials,
        min_resource=min_resource,
        max_resource=max_resource,
        eta=eta,
        brackets=cast(Brackets, brackets),
        sampler=cast(SamplerName, sampler),
        on_nan=cast(OnNan, _enum(errs, t, p, "on_nan", d.on_nan, _ON_NAN)),
        sampler_options=options,
    )
    if (
        errs.ok("searcher.min_resource", "searcher.max_resource")
        and spec.max_resource < spec.min_resource
    ):
        errs.add(
            "searcher.max_resource",
            f"must be >= min_resource ({spec.min_resource})",
            spec.max_resource,
        )
    return spec


def _sampler_options(errs: _Errors, t: Mapping[str, object], sampler: str) -> TpeOptions | None:
    """``searcher.sampler_options``: the tpe sampler's table; no other sampler takes options."""
    p = "searcher.sampler_options"
    raw = t.get("sampler_options", {})
    if sampler != "tpe":
        if raw != {} and errs.ok("searcher.sampler"):
            errs.add(p, f"only the tpe sampler takes options (sampler is {sampler!r})", raw)
        return None
    o = _table(errs, raw, p, [f.name for f in fields(TpeOptions)])
    d = TpeOptions()
    return TpeOptions(
        n_startup=_int(errs, o, p, "n_startup", d.n_startup, 1, 100_000),
        multivariate=_bool(errs, o, p, "multivariate", d.multivariate),
        constant_liar=_bool(errs, o, p, "constant_liar", d.constant_liar),
        n_ei_candidates=_int(errs, o, p, "n_ei_candidates", d.n_ei_candidates, 1, 10_000),
    )


def _check_tpe_space(errs: _Errors, space: tuple[ParamSpec, ...]) -> None:
    """The tpe sampler models continuous, integer and categorical parameters, not grids."""
    for param in space:
        if param.points is not None:
            errs.add(
                f"space.{param.name}.points",
                "is for the grid sampler only; the tpe sampler models the whole range",
                param.points,
            )
    if space and not any(_varies(param) for param in space):
        errs.add("space", "the tpe sampler needs a parameter with more than one value")


def _varies(param: ParamSpec) -> bool:
    if param.type in ("uniform", "loguniform"):
        return True  # low < high is enforced
    return _grid_count(param) > 1


def _resources(errs: _Errors, raw: object) -> ResourcesSpec:
    p = "resources"
    t = _table(errs, raw, p, [f.name for f in fields(ResourcesSpec)])
    d = ResourcesSpec()
    return ResourcesSpec(
        gpus_per_trial=_int(errs, t, p, "gpus_per_trial", d.gpus_per_trial, 0, 8),
        max_concurrent=_int(errs, t, p, "max_concurrent", d.max_concurrent, 1, 4096),
        min_free_memory_mb=_int(
            errs, t, p, "min_free_memory_mb", d.min_free_memory_mb, 0, 10**8, cap=True
        ),
    )


def _subset(errs: _Errors, raw: object) -> SubsetSpec:
    p = "subset"
    t = _table(errs, raw, p, [f.name for f in fields(SubsetSpec)])
    d = SubsetSpec()
    spec = SubsetSpec(
        strategy=cast(Strategy, _enum(errs, t, p, "strategy", d.strategy, _STRATEGIES)),
        fraction=_float(errs, t, p, "fraction", d.fraction, gt=0.0, le=1.0),
        select_every=_int(errs, t, p, "select_every", d.select_every, 1, 10**6, cap=True),
        per_batch=_bool(errs, t, p, "per_batch", d.per_batch),
    )
    if errs.ok("subset.strategy", "subset.fraction"):
        if spec.strategy != "none" and spec.fraction >= 1.0:
            errs.add(
                "subset.fraction", f"must be < 1 when strategy is {spec.strategy!r}", spec.fraction
            )
        elif spec.strategy == "none" and spec.fraction < 1.0:
            errs.add("subset.fraction", "needs a subset strategy other than 'none'", spec.fraction)
    ok = errs.ok("subset.strategy", "subset.per_batch")
    if ok and spec.per_batch and spec.strategy != "gradmatch":
        errs.add("subset.per_batch", "only valid with strategy 'gradmatch'", spec.per_batch)
    return spec


def _limits(errs: _Errors, raw: object) -> LimitsSpec:
    p = "limits"
    t = _table(errs, raw, p, [f.name for f in fields(LimitsSpec)])
    d = LimitsSpec()
    return LimitsSpec(
        max_restarts=_int(errs, t, p, "max_restarts", d.max_restarts, 0, 100),
        progress_timeout_s=_float(
            errs, t, p, "progress_timeout_s", d.progress_timeout_s, gt=0.0, le=1e9
        ),
    )


def _env(errs: _Errors, raw: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        errs.add("env", "must be a table (mapping) of strings", raw)
        return ()
    if len(raw) > MAX_ENV:
        errs.add("env", f"must have at most {MAX_ENV} variables", len(raw))
        return ()
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            errs.add("env", "variable names must be strings", key)
            continue
        p = _join("env", _key_text(key))
        if len(key) > MAX_ENV_NAME_LEN or not _ENV_NAME_RE.fullmatch(key):
            errs.add(
                p, f"name must match [A-Z_][A-Z0-9_]* (at most {MAX_ENV_NAME_LEN} characters)", key
            )
        elif key.startswith("HPD_"):
            errs.add(p, "must not start with HPD_ (reserved for hpd)", key)
        elif key == "CUDA_VISIBLE_DEVICES":
            errs.add(p, "is set by hpd for each trial and cannot be overridden", key)
        elif _text(errs, p, value, MAX_ENV_VALUE_LEN, empty_ok=True):
            out[key] = str(value)
    return tuple(sorted(out.items()))


# --------------------------------------------------------------------------------------------
# The search space
# --------------------------------------------------------------------------------------------


def _bounds_float(errs: _Errors, t: Mapping[str, object], p: str, typ: str) -> tuple[float, float]:
    lo = hi = 0.0
    for key in ("low", "high"):
        if key not in t:
            errs.add(f"{p}.{key}", f"is required for type {typ!r}")
            continue
        f = _finite(errs, f"{p}.{key}", t[key], "a number")
        if f is not None:
            lo, hi = (f, hi) if key == "low" else (lo, f)
    low_ok, high_ok = errs.ok(f"{p}.low"), errs.ok(f"{p}.high")
    if typ == "loguniform" and low_ok and lo <= 0:
        errs.add(f"{p}.low", "must be > 0 for loguniform", t["low"])
    if not (low_ok and high_ok):
        return lo, hi
    if not lo < hi:
        errs.add(f"{p}.high", f"must be > low ({lo!r})", t["high"])
    elif not math.isfinite(hi - lo):
        errs.add(f"{p}.high", "high - low must be finite", t["high"])
    return lo, hi


def _bounds_int(errs: _Errors, t: Mapping[str, object], p: str) -> tuple[int, int]:
    lo = hi = 0
    desc = f"an integer in -{MAX_INT_PARAM}..{MAX_INT_PARAM}"
    for key in ("low", "high"):
        if key not in t:
            errs.add(f"{p}.{key}", "is required for type 'int'")
            continue
        v = t[key]
        if not _is_int(v) or not -MAX_INT_PARAM <= cast(int, v) <= MAX_INT_PARAM:
            errs.add(f"{p}.{key}", f"must be {desc}", v)
            continue
        lo, hi = (int(cast(int, v)), hi) if key == "low" else (lo, int(cast(int, v)))
    if errs.ok(f"{p}.low", f"{p}.high") and hi < lo:
        errs.add(f"{p}.high", f"must be >= low ({lo})", hi)
    return lo, hi


def _choice_value(errs: _Errors, p: str, v: object) -> Scalar | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        if not -INT64_MAX - 1 <= v <= INT64_MAX:
            errs.add(p, "must be a 64-bit integer", v)
            return None
        return int(v)
    if isinstance(v, float):
        return _finite(errs, p, v, "a number")
    if isinstance(v, str):
        return str(v) if _text(errs, p, v, MAX_CHOICE_STR_LEN, empty_ok=True) else None
    errs.add(p, "must be a string, number or boolean", v)
    return None


def _choice_values(errs: _Errors, t: Mapping[str, object], p: str) -> tuple[Scalar, ...]:
    p = f"{p}.values"
    if "values" not in t:
        errs.add(p, "is required for type 'choice'")
        return ()
    raw = t["values"]
    if not isinstance(raw, list | tuple):
        errs.add(p, "must be a list", raw)
        return ()
    if not raw:
        errs.add(p, "must not be empty", raw)
        return ()
    if len(raw) > MAX_CHOICES:
        errs.add(p, f"must have at most {MAX_CHOICES} values", len(raw))
        return ()
    out: list[Scalar] = []
    seen: set[tuple[bool, Scalar]] = set()
    for i, item in enumerate(raw):
        v = _choice_value(errs, f"{p}[{i}]", item)
        if v is None:
            continue
        key = (isinstance(v, bool), v)  # True and 1 differ; 1 and 1.0 do not
        if key in seen:
            errs.add(f"{p}[{i}]", "duplicate value", v)
        seen.add(key)
        out.append(v)
    return tuple(out)


def _param(errs: _Errors, name: str, raw: object) -> ParamSpec | None:
    p = f"space.{name}"
    t = _table(errs, raw, p, _ALL_PARAM_FIELDS)
    if not isinstance(raw, Mapping):
        return None
    typ = t.get("type")
    if "type" not in t:
        errs.add(f"{p}.type", "is required")
        return None
    if not isinstance(typ, str) or typ not in _PARAM_TYPES:
        errs.add(f"{p}.type", "must be one of " + ", ".join(map(repr, _PARAM_TYPES)), typ)
        return None
    for key in t:
        if key not in _PARAM_FIELDS[typ]:
            errs.add(f"{p}.{key}", f"not valid for type {typ!r}", t[key])
    if typ == "choice":
        return ParamSpec(name, "choice", values=_choice_values(errs, t, p))
    if typ == "int":
        lo, hi = _bounds_int(errs, t, p)
        log = _bool(errs, t, p, "log", False)
        if log and errs.ok(f"{p}.low") and lo < 1:
            errs.add(f"{p}.low", "must be >= 1 when log is true", lo)
        return ParamSpec(name, "int", low=lo, high=hi, log=log)
    flo, fhi = _bounds_float(errs, t, p, typ)
    points = None
    if "points" in t:
        points = _int(errs, t, p, "points", GRID_DEFAULT_POINTS, 2, MAX_GRID_POINTS)
    return ParamSpec(name, cast(ParamType, typ), low=flo, high=fhi, points=points)


def _space(errs: _Errors, top: Mapping[str, object]) -> tuple[ParamSpec, ...]:
    if "space" not in top:
        errs.add("space", "is required")
        return ()
    raw = top["space"]
    if not isinstance(raw, Mapping):
        errs.add("space", "must be a table of parameters", raw)
        return ()
    if not raw:
        errs.add("space", "must not be empty")
        return ()
    if len(raw) > MAX_PARAMS:
        errs.add("space", f"must have at most {MAX_PARAMS} parameters", len(raw))
        return ()
    params: list[ParamSpec] = []
    for name, value in raw.items():
        if not isinstance(name, str):
            errs.add("space", "parameter names must be strings", name)
            continue
        if len(name) > MAX_PARAM_NAME_LEN or not _IDENT_RE.fullmatch(name):
            errs.add(
                f"space.{_key_text(name)}",
                "parameter names must be identifiers ([A-Za-z_][A-Za-z0-9_]*, "
                f"at most {MAX_PARAM_NAME_LEN} characters)",
                name,
            )
            continue
        param = _param(errs, name, value)
        if param is not None:
            params.append(param)
    return tuple(params)


def _config_value(errs: _Errors, p: str, param: ParamSpec, v: object) -> Scalar | None:
    """``v`` if it is a value ``param`` could have been sampled as, else an error at ``p``."""
    if param.type == "choice":
        values = param.values or ()
        # True and 1 are different choices; 1 and 1.0 are the same one
        for c in values:
            if isinstance(c, bool) == isinstance(v, bool) and c == v:
                return c
        errs.add(p, "must be one of " + _show(list(values)), v)
        return None
    lo, hi = param.low, param.high
    if param.type == "int":
        if not _is_int(v) or not cast(int, lo) <= cast(int, v) <= cast(int, hi):
            errs.add(p, f"must be an integer in {lo}..{hi}", v)
            return None
        return int(cast(int, v))
    if not _is_num(v) or not math.isfinite(cast(float, v)):
        errs.add(p, f"must be a number in [{lo}, {hi}]", v)
        return None
    f = float(cast(float, v))
    if not cast(float, lo) <= f <= cast(float, hi):
        errs.add(p, f"must be within [{lo}, {hi}]", v)
        return None
    return f


def _config(
    errs: _Errors, p: str, raw: object, space: tuple[ParamSpec, ...]
) -> tuple[tuple[str, Scalar], ...] | None:
    t = _table(errs, raw, p, [param.name for param in space])
    if not isinstance(raw, Mapping):
        return None
    out: list[tuple[str, Scalar]] = []
    for param in space:
        if param.name not in t:
            errs.add(f"{p}.{param.name}", "is required (every parameter of space)")
            continue
        v = _config_value(errs, f"{p}.{param.name}", param, t[param.name])
        if v is not None:
            out.append((param.name, v))
    return tuple(out) if len(out) == len(space) else None


def _configs(
    errs: _Errors, raw: object, space: tuple[ParamSpec, ...]
) -> tuple[tuple[tuple[str, Scalar], ...], ...]:
    """The fixed configurations: each a table giving every parameter of the space a value
    inside its bounds (or among its choices)."""
    if not isinstance(raw, list | tuple):
        errs.add("configs", "must be a list of tables", raw)
        return ()
    if len(raw) > MAX_CONFIGS:
        errs.add("configs", f"must have at most {MAX_CONFIGS} configurations", len(raw))
        return ()
    out = []
    for i, item in enumerate(raw):
        config = _config(errs, f"configs[{i}]", item, space)
        if config is not None:
            out.append(config)
    return tuple(out)


def _grid_count(param: ParamSpec) -> int:
    """Number of grid points of one parameter (its values are already valid)."""
    if param.type == "choice":
        return len(param.values or ())
    if param.type == "int":
        return int(param.high or 0) - int(param.low or 0) + 1
    return param.points if param.points is not None else GRID_DEFAULT_POINTS


def _check_grid(errs: _Errors, space: tuple[ParamSpec, ...]) -> None:
    size = 1
    for param in space:
        n = _grid_count(param)
        if param.type == "int" and n > MAX_GRID_INT_VALUES:
            errs.add(
                f"space.{param.name}",
                f"int range too large for the grid sampler (max {MAX_GRID_INT_VALUES} values)",
                n,
            )
        size *= n
    if errs.ok_under("space") and size > MAX_GRID_SIZE:
        errs.add("space", f"too many points for the grid sampler (max {MAX_GRID_SIZE})", size)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def parse_spec(data: object, *, base_dir: str | None = None) -> Spec:
    """Validate a spec given as a mapping (from TOML/YAML/JSON or Python) and freeze it.

    Raises ``SpecError`` listing every problem. If ``base_dir`` is given, a relative
    ``workdir`` is resolved against it (string operations only; nothing is checked on disk).
    """
    errs = _Errors()
    if not isinstance(data, Mapping):
        errs.add("spec", "must be a table (mapping)", data)
        raise errs.error()
    top = _table(errs, data, "", _TOP_FIELDS)
    name = _name(errs, top)
    metric = _metric(errs, top)
    mode = _mode(errs, top)
    seed = _int(errs, top, "", "seed", 0, 0, INT64_MAX)
    entrypoint, command = _program(errs, top)
    workdir = _workdir(errs, top, base_dir)
    searcher = _searcher(errs, top.get("searcher", {}))
    space = _space(errs, top)
    if searcher.sampler == "grid" and errs.ok("searcher.sampler") and errs.ok_under("space"):
        _check_grid(errs, space)
    if searcher.sampler == "tpe" and errs.ok_under("space"):
        _check_tpe_space(errs, space)
    resources = _resources(errs, top.get("resources", {}))
    subset = _subset(errs, top.get("subset", {}))
    limits = _limits(errs, top.get("limits", {}))
    env = _env(errs, top.get("env", {}))
    configs: tuple[tuple[tuple[str, Scalar], ...], ...] = ()
    if errs.ok_under("space"):
        configs = _configs(errs, top.get("configs", []), space)
    if searcher.sampler == "fixed" and errs.ok("searcher.sampler", "configs") and not configs:
        errs.add("configs", 'must list at least one configuration when searcher.sampler is "fixed"')
    if errs.items:
        raise errs.error()
    return Spec(
        name=name,
        metric=metric,
        mode=mode,
        seed=seed,
        entrypoint=entrypoint,
        command=command,
        workdir=workdir,
        searcher=searcher,
        space=space,
        resources=resources,
        subset=subset,
        limits=limits,
        env=env,
        configs=configs,
    )


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only), plus YAML 1.2 floats and duplicate-key errors.

    PyYAML follows YAML 1.1, where ``1e-5`` (no dot) is a *string*; a spec writing
    ``low = 1e-5`` must mean the same number in every format.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _json_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _yaml_depth_ok(text: str) -> bool:
    """Cheap pre-check: brackets nest at most MAX_YAML_DEPTH deep (quotes are not skipped, so
    only a string with that many unbalanced brackets could be refused wrongly)."""
    depth = 0
    for m in re.finditer(r"[\[\]{}]", text):
        depth = depth + 1 if m.group() in "[{" else max(depth - 1, 0)
        if depth > MAX_YAML_DEPTH:
            return False
    return True


def _load_yaml(text: str) -> object:
    if not _yaml_depth_ok(text):
        raise ValueError(f"nested too deeply (more than {MAX_YAML_DEPTH} levels of brackets)")
    try:
        return yaml.load(text, Loader=_YamlLoader)  # safe: a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x) or "syntax error"
        raise ValueError(_one_line(what) + where) from None


def _load_json(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_json_pairs)
    except json.JSONDecodeError as e:
        raise ValueError(f"{e.msg} (at line {e.lineno}, column {e.colno})") from None


_LOADERS: Final[dict[str, Callable[[str], object]]] = {
    "toml": tomllib.loads,
    "yaml": _load_yaml,
    "json": _load_json,
}
_FORMAT_NAMES: Final = {"toml": "TOML", "yaml": "YAML", "json": "JSON"}


def parse_spec_text(
    text: str | bytes,
    fmt: Literal["toml", "yaml", "json"],
    *,
    base_dir: str | None = None,
    source: str = "spec",
) -> Spec:
    """Parse TOML, YAML (safe loader) or JSON text and validate it with ``parse_spec``.

    Errors that concern the whole text (size, UTF-8, syntax) are prefixed with ``source``
    (the file name when called from ``load_spec_file``; ``spec`` otherwise).
    """
    if fmt not in _LOADERS:
        raise SpecError([f"{source}: unknown spec format {fmt!r} (use toml, yaml or json)"])
    label = _FORMAT_NAMES[fmt]
    limit = MAX_YAML_BYTES if fmt == "yaml" else MAX_SPEC_BYTES
    if len(text) > limit:
        raise SpecError([f"{source}: too large (max {limit} bytes for {label}), got {len(text)}"])
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SpecError([f"{source}: invalid UTF-8 at byte {e.start}"]) from None
    text = text.removeprefix("\ufeff")
    try:
        data = _LOADERS[fmt](text)
    except RecursionError:
        raise SpecError([f"{source}: invalid {label}: nested too deeply"]) from None
    except (ValueError, TypeError, OverflowError, UnicodeError, yaml.YAMLError) as e:
        raise SpecError([f"{source}: invalid {label}: {_one_line(str(e))[:500]}"]) from None
    if not isinstance(data, Mapping):
        raise SpecError([f"{source}: the top level must be a table (mapping), got {_show(data)}"])
    return parse_spec(data, base_dir=base_dir)


_EXTENSIONS: Final[dict[str, Literal["toml", "yaml", "json"]]] = {
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
}


def load_spec_file(path: str) -> Spec:
    """Read and parse one spec file; the format comes from the extension.

    A relative ``workdir`` is resolved against the file's (absolute) directory. Unreadable
    files raise ``SpecError`` too, so callers print one kind of error.
    """
    fmt = _EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise SpecError([f"{path}: unknown spec format (use .toml, .yaml, .yml or .json)"])
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError([f"{path}: cannot read: {e.strerror or e}"]) from None
    base_dir = os.path.dirname(os.path.abspath(path))
    return parse_spec_text(data, fmt, base_dir=base_dir, source=path)


def _param_to_dict(p: ParamSpec) -> dict[str, object]:
    d: dict[str, object] = {"type": p.type}
    if p.type == "choice":
        d["values"] = list(p.values or ())
        return d
    d["low"], d["high"] = p.low, p.high
    if p.type == "int":
        d["log"] = p.log
    elif p.points is not None:
        d["points"] = p.points
    return d


def _flat(
    obj: SearcherSpec | ResourcesSpec | SubsetSpec | LimitsSpec | TpeOptions,
) -> dict[str, object]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _searcher_to_dict(searcher: SearcherSpec) -> dict[str, object]:
    d = _flat(searcher)
    options = d.pop("sampler_options")
    if isinstance(options, TpeOptions):  # only the tpe sampler has (and accepts) options
        d["sampler_options"] = _flat(options)
    return d


def spec_to_dict(spec: Spec) -> dict[str, object]:
    """The canonical JSON-able form: every field explicit (defaults resolved), lists for
    tuples, ``entrypoint``/``command`` only when set. ``parse_spec(spec_to_dict(s)) == s``."""
    d: dict[str, object] = {
        "name": spec.name,
        "metric": spec.metric,
        "mode": spec.mode,
        "seed": spec.seed,
    }
    if spec.entrypoint is not None:
        d["entrypoint"] = spec.entrypoint
    if spec.command is not None:
        d["command"] = list(spec.command)
    d["workdir"] = spec.workdir
    d["searcher"] = _searcher_to_dict(spec.searcher)
    d["space"] = {p.name: _param_to_dict(p) for p in spec.space}
    d["resources"] = _flat(spec.resources)
    d["subset"] = _flat(spec.subset)
    d["limits"] = _flat(spec.limits)
    d["env"] = dict(spec.env)
    if spec.configs:
        d["configs"] = [dict(c) for c in spec.configs]
    return d
