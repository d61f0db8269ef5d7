"""``parse_spec``: a mapping (from TOML/YAML/JSON or Python) to a validated, frozen ``Spec``.

Owns the order in which the sections are read and the checks that span sections (the grid
and tpe samplers against the space, ``configs`` for the fixed sampler), and is the one place
that raises ``SpecError``, listing every problem found.

It must never: touch the filesystem (``base_dir`` handling is string work), read a clock,
execute or construct anything from the input, raise anything but ``SpecError`` for bad input,
or import asyncio, sockets or sqlite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from hpd.core.spec.fields import _Errors, _int, _table
from hpd.core.spec.schema import INT64_MAX, Scalar, Spec
from hpd.core.spec.sections import (
    _env,
    _limits,
    _metric,
    _mode,
    _name,
    _program,
    _resources,
    _searcher,
    _subset,
    _workdir,
)
from hpd.core.spec.space import _check_grid, _check_tpe_space, _configs, _space

__all__ = ["parse_spec"]

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
