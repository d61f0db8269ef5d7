"""Sampling configurations from a validated search space.

Owns the samplers: ``random`` (seeded per trial index), ``grid`` (the cartesian product,
enumerated in a fixed order) and ``fixed`` (only the spec's ``configs``); the spec's ``configs``
come first whatever the sampler. A sampler maps a trial index to its parameters and is a pure
function of (spec, index): the same index gives the same configuration whatever was asked
before, in whatever order, in whatever process. The ``tpe`` sampler's proposals also depend on
the results so far (``Observation``); ``hpd.core.tpe`` makes them, and until its model is ready it
draws exactly what ``random`` draws (so ``make_sampler`` gives the random sampler for it).

It must never: do I/O, read a clock, import asyncio, use global or unseeded randomness, or
rely on ``hash()`` (salted per process). It trusts that the spec came from ``parse_spec``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from hpd.core.spec import GRID_DEFAULT_POINTS, ParamSpec, Scalar, Spec

__all__ = [
    "ConfigsFirst",
    "GridSampler",
    "Observation",
    "Params",
    "Proposal",
    "RandomSampler",
    "Sampler",
    "make_sampler",
    "results_of",
]

Params = dict[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Observation:
    """What the ladder knows of one trial when a new one is proposed."""

    index: int
    params: Mapping[str, Scalar]
    state: Literal["running", "paused", "completed", "failed"]  # the ladder's TrialState
    values: tuple[tuple[int, float], ...]  # (resource, value) per rung reached, lowest first


def results_of(observations: Sequence[Observation]) -> int:
    """Trials a model learns from: those with a rung result that are not in flight again
    (as Optuna counts finished trials for its start-up)."""
    return sum(1 for o in observations if o.values and o.state != "running")


@dataclass(frozen=True, slots=True)
class Proposal:
    """A new trial's configuration and where it came from (for its ``trial_created`` event:
    ``sampler`` always, ``summary`` a line for people, and a model's inputs)."""

    params: Params
    info: dict[str, Any]


class Sampler(Protocol):
    def params_for(self, index: int) -> Params | None:
        """The configuration of the ``index``-th trial (0-based); None once exhausted."""
        ...


def _check_index(index: int) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"trial index must be an integer >= 0, got {index!r}")


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def _sample(param: ParamSpec, rng: random.Random) -> Scalar:
    """One value of ``param``, always within its bounds (inclusive)."""
    if param.type == "choice":
        return rng.choice(param.values or ())
    lo, hi = param.low, param.high
    if lo is None or hi is None:  # unreachable for a parsed spec
        raise ValueError(f"parameter {param.name!r} has no bounds")
    if param.type == "uniform":
        return _clip(rng.uniform(lo, hi), lo, hi)
    if param.type == "loguniform":
        return _clip(math.exp(rng.uniform(math.log(lo), math.log(hi))), lo, hi)
    ilo, ihi = int(lo), int(hi)
    if not param.log:
        return rng.randint(ilo, ihi)
    # floor(exp(U(log lo, log(hi + 1)))): P(k) is proportional to log((k + 1) / k)
    x = math.floor(math.exp(rng.uniform(math.log(ilo), math.log(ihi + 1))))
    return min(max(int(x), ilo), ihi)


class RandomSampler:
    """Independent random configurations: parameter ``name`` of trial ``i`` depends only on
    (seed, i, name), so neither the order of the space (JSON stores may sort keys) nor adding
    or removing another parameter changes it."""

    __slots__ = ("_seed", "_space")

    def __init__(self, spec: Spec) -> None:
        self._seed = spec.seed
        self._space = spec.space

    def params_for(self, index: int) -> Params:
        _check_index(index)
        # A str seed is hashed with SHA-512 by random.Random: stable across runs and platforms
        # (never hash(), which is salted per process).
        return {
            p.name: _sample(p, random.Random(f"{self._seed}:{index}:{p.name}")) for p in self._space
        }


def _axis(param: ParamSpec) -> tuple[Scalar, ...]:
    """The grid values of one parameter, in order, without duplicates."""
    if param.type == "choice":
        return tuple(param.values or ())
    lo, hi = param.low, param.high
    if lo is None or hi is None:  # unreachable for a parsed spec
        raise ValueError(f"parameter {param.name!r} has no bounds")
    if param.type == "int":
        return tuple(range(int(lo), int(hi) + 1))
    n = param.points if param.points is not None else GRID_DEFAULT_POINTS
    flo, fhi = float(lo), float(hi)
    if param.type == "loguniform":
        a, b = math.log(flo), math.log(fhi)
        inner = [_clip(math.exp(a + (b - a) * k / (n - 1)), flo, fhi) for k in range(1, n - 1)]
    else:
        inner = [_clip(flo + (fhi - flo) * k / (n - 1), flo, fhi) for k in range(1, n - 1)]
    # both ends exactly; dict.fromkeys drops points that collapse on a very narrow range
    return tuple(dict.fromkeys([flo, *inner, fhi]))


class GridSampler:
    """The cartesian product of every parameter's grid values; the first parameter varies
    slowest (like nested for-loops in spec order). ``size`` is the number of configurations."""

    __slots__ = ("_axes", "_names", "size")

    def __init__(self, spec: Spec) -> None:
        self._names = tuple(p.name for p in spec.space)
        self._axes = tuple(_axis(p) for p in spec.space)
        self.size: Final = math.prod(len(axis) for axis in self._axes)

    def params_for(self, index: int) -> Params | None:
        _check_index(index)
        if index >= self.size:
            return None
        params: Params = {}
        for name, axis in zip(reversed(self._names), reversed(self._axes), strict=True):
            index, digit = divmod(index, len(axis))
            params[name] = axis[digit]
        return {name: params[name] for name in self._names}


class _Exhausted:
    """The ``fixed`` sampler's tail: nothing after the listed configurations."""

    __slots__ = ()

    def params_for(self, index: int) -> Params | None:
        _check_index(index)
        return None


class ConfigsFirst:
    """The spec's listed ``configs`` as trials 0..n-1, then the ``rest`` sampler's trials
    0, 1, ... (so listing configurations never changes which ones the sampler draws)."""

    __slots__ = ("_configs", "_rest")

    def __init__(self, configs: tuple[tuple[tuple[str, Scalar], ...], ...], rest: Sampler) -> None:
        self._configs = configs
        self._rest = rest

    def params_for(self, index: int) -> Params | None:
        _check_index(index)
        if index < len(self._configs):
            return dict(self._configs[index])
        return self._rest.params_for(index - len(self._configs))


def make_sampler(spec: Spec) -> Sampler:
    """The sampler named by ``spec.searcher.sampler``, after the spec's ``configs``."""
    rest: Sampler
    if spec.searcher.sampler == "grid":
        rest = GridSampler(spec)
    elif spec.searcher.sampler == "fixed":
        rest = _Exhausted()
    else:
        rest = RandomSampler(spec)
    return ConfigsFirst(spec.configs, rest) if spec.configs else rest
