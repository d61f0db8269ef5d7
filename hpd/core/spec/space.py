"""Readers of the search space and the fixed configurations, and the per-sampler space checks.

Owns ``space`` (each parameter's type, bounds, choices, ``log`` and ``points``), ``configs``
(each a value for every parameter, inside its bounds or among its choices), and the checks a
sampler puts on the space (grid size, tpe needs a varying parameter). Sampling from the space
is ``hpd.core.space``'s, not this module's.

It must never: raise for bad input (errors go to ``_Errors``), sample or enumerate the space,
do I/O, or import asyncio, sockets or sqlite.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final, cast

from hpd.core.spec.fields import (
    _bool,
    _Errors,
    _finite,
    _int,
    _is_int,
    _is_num,
    _key_text,
    _show,
    _table,
    _text,
)
from hpd.core.spec.schema import (
    GRID_DEFAULT_POINTS,
    INT64_MAX,
    MAX_CHOICE_STR_LEN,
    MAX_CHOICES,
    MAX_CONFIGS,
    MAX_GRID_INT_VALUES,
    MAX_GRID_POINTS,
    MAX_GRID_SIZE,
    MAX_INT_PARAM,
    MAX_PARAM_NAME_LEN,
    MAX_PARAMS,
    PARAM_TYPES,
    ParamSpec,
    ParamType,
    Scalar,
)

_IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
# The fields each parameter type accepts; any other known field is "not valid for type".
_PARAM_FIELDS: Final = {
    "uniform": ("type", "low", "high", "points"),
    "loguniform": ("type", "low", "high", "points"),
    "int": ("type", "low", "high", "log"),
    "choice": ("type", "values"),
}
_ALL_PARAM_FIELDS: Final = ("type", "low", "high", "values", "log", "points")


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
    if not isinstance(typ, str) or typ not in PARAM_TYPES:
        errs.add(f"{p}.type", "must be one of " + ", ".join(map(repr, PARAM_TYPES)), typ)
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
