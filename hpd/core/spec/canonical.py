"""``spec_to_dict``: the canonical JSON-able form of a ``Spec``.

Owns the canonical dict: every field explicit (defaults resolved), lists for tuples, and
``parse_spec(spec_to_dict(s)) == s`` for every valid spec.

It must never: validate (a ``Spec`` is valid by construction), serialize to text, do I/O, or
import asyncio, sockets or sqlite.
"""

from __future__ import annotations

from dataclasses import fields

from hpd.core.spec.schema import (
    LimitsSpec,
    ParamSpec,
    ResourcesSpec,
    SearcherSpec,
    Spec,
    SubsetSpec,
    TpeOptions,
)

__all__ = ["spec_to_dict"]


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
