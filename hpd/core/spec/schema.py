"""The spec's schema: the Literal types, the frozen dataclasses and the limits they obey.

Owns each Literal type once (``Mode``, ``SearcherName``, ``Brackets``, ...) with its tuple of
allowed values derived from it, the dataclasses that describe a search (``Spec`` and its
parts), their defaults, and the size limits the readers enforce. ``hpd.core.asha`` takes its
``Mode``, ``SearcherName`` and ``BracketMode`` from here, so the two cannot drift apart.

It must never: validate, parse or load anything (that is the rest of ``hpd.core.spec``), do
I/O, or import anything from hpd (``hpd.core.asha`` imports it: an import back would be a
cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

__all__ = [
    "BRACKETS",
    "GRID_DEFAULT_POINTS",
    "INT64_MAX",
    "MAX_ARGS",
    "MAX_ARG_LEN",
    "MAX_CHOICES",
    "MAX_CHOICE_STR_LEN",
    "MAX_CONFIGS",
    "MAX_ENTRYPOINT_LEN",
    "MAX_ENV",
    "MAX_ENV_NAME_LEN",
    "MAX_ENV_VALUE_LEN",
    "MAX_GRID_INT_VALUES",
    "MAX_GRID_POINTS",
    "MAX_GRID_SIZE",
    "MAX_INT_PARAM",
    "MAX_METRIC_LEN",
    "MAX_NAME_LEN",
    "MAX_PARAMS",
    "MAX_PARAM_NAME_LEN",
    "MAX_PATH_LEN",
    "MODES",
    "ON_NAN",
    "PARAM_TYPES",
    "SAMPLERS",
    "SEARCHERS",
    "STRATEGIES",
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
]

Scalar = str | int | float | bool
ParamType = Literal["uniform", "loguniform", "int", "choice"]
SearcherName = Literal["asha", "hyperband", "sha", "random"]
Brackets = Literal["aggressive", "standard", "conservative"]
SamplerName = Literal["random", "grid", "fixed", "tpe"]
OnNan = Literal["stop", "retry"]
Strategy = Literal["none", "random", "gradmatch", "craig"]
Mode = Literal["max", "min"]

# The allowed values of each Literal, in its order (error messages list them in that order).
# Derived, not repeated, so that adding a value to a Literal cannot miss the validator.
PARAM_TYPES: Final[tuple[str, ...]] = get_args(ParamType)
SEARCHERS: Final[tuple[str, ...]] = get_args(SearcherName)
BRACKETS: Final[tuple[str, ...]] = get_args(Brackets)
SAMPLERS: Final[tuple[str, ...]] = get_args(SamplerName)
ON_NAN: Final[tuple[str, ...]] = get_args(OnNan)
STRATEGIES: Final[tuple[str, ...]] = get_args(Strategy)
MODES: Final[tuple[str, ...]] = get_args(Mode)

GRID_DEFAULT_POINTS: Final = 5
"""Grid points for a uniform/loguniform parameter without ``points``."""


# --------------------------------------------------------------------------------------------
# Limits of the schema
# --------------------------------------------------------------------------------------------

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
