"""Readers of the spec's top-level fields and of its small sections.

Owns ``name``, ``metric``, ``mode``, ``entrypoint``/``command``, ``workdir`` and the
``searcher`` (with ``sampler_options``), ``resources``, ``subset``, ``limits`` and ``env``
tables: their field rules, defaults and the checks across fields of one section. The
``space`` and ``configs`` are ``space.py``'s.

It must never: raise for bad input (errors go to ``_Errors``), touch the filesystem
(``workdir`` against ``base_dir`` is string work only), or import asyncio, sockets or sqlite.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Final, cast

from hpd.core.spec.fields import (
    _bool,
    _enum,
    _Errors,
    _float,
    _int,
    _join,
    _key_text,
    _table,
    _text,
)
from hpd.core.spec.schema import (
    BRACKETS,
    MAX_ARG_LEN,
    MAX_ARGS,
    MAX_ENTRYPOINT_LEN,
    MAX_ENV,
    MAX_ENV_NAME_LEN,
    MAX_ENV_VALUE_LEN,
    MAX_METRIC_LEN,
    MAX_NAME_LEN,
    MAX_PATH_LEN,
    MODES,
    ON_NAN,
    SAMPLERS,
    SEARCHERS,
    STRATEGIES,
    Brackets,
    LimitsSpec,
    Mode,
    OnNan,
    ResourcesSpec,
    SamplerName,
    SearcherName,
    SearcherSpec,
    Strategy,
    SubsetSpec,
    TpeOptions,
)

_METRIC_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*", re.ASCII)
_DOTTED: Final = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_ENTRYPOINT_RE: Final = re.compile(f"{_DOTTED}:{_DOTTED}", re.ASCII)
_ENV_NAME_RE: Final = re.compile(r"[A-Z_][A-Z0-9_]*", re.ASCII)


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
    return cast(Mode, _enum(errs, top, "", "mode", "max", MODES))


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
    name = _enum(errs, t, p, "name", d.name, SEARCHERS)
    max_trials = _int(errs, t, p, "max_trials", d.max_trials, 1, 100_000)
    min_resource = _int(errs, t, p, "min_resource", d.min_resource, 1, 10**9, cap=True)
    max_resource = _int(errs, t, p, "max_resource", d.max_resource, 1, 10**9, cap=True)
    eta = _int(errs, t, p, "eta", d.eta, 2, 1000, cap=True)
    # Determined's default for hyperband; asha/sha/random default to one bracket
    default_brackets = "conservative" if name == "hyperband" else d.brackets
    brackets = _enum(errs, t, p, "brackets", default_brackets, BRACKETS)
    sampler = _enum(errs, t, p, "sampler", d.sampler, SAMPLERS)
    options = _sampler_options(errs, t, sampler)
    spec = SearcherSpec(
        name=cast(SearcherName, name),
        max_trials=max_trials,
        min_resource=min_resource,
        max_resource=max_resource,
        eta=eta,
        brackets=cast(Brackets, brackets),
        sampler=cast(SamplerName, sampler),
        on_nan=cast(OnNan, _enum(errs, t, p, "on_nan", d.on_nan, ON_NAN)),
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
        strategy=cast(Strategy, _enum(errs, t, p, "strategy", d.strategy, STRATEGIES)),
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
