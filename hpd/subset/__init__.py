"""Data-subset selection for trials: random, GRAD-MATCH and CRAIG subsets, and their loader.

The only part of hpd that imports torch, and only when one of the names below is first used
(``import hpd.subset`` itself stays torch-free). The daemon never imports this package; trials
do. Modules: ``kernels`` (gradient sets, factored inner products), ``features`` (closed-form
last-layer gradients from one inference pass), ``omp`` (non-negative OMP = Lawson-Hanson
NNLS stopped at k atoms, alone or on many blocks at once), ``blocks`` (large groups split into
small blocks of nearby points), ``gradmatch`` (GRAD-MATCH on groups, with the random fill),
``craig`` (facility location), ``strategies`` (``select`` and friends), ``data`` (index-exact
dataset access), ``loader`` (``SubsetLoader`` and its timings).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpd.subset.blocks import apportion
    from hpd.subset.features import find_head, last_layer_features
    from hpd.subset.kernels import DenseGrads, GradFeatures, GradKernel, match_error
    from hpd.subset.loader import SubsetLoader, SubsetTimings
    from hpd.subset.strategies import STRATEGIES, budget, select, select_batches

_EXPORTS = {
    "select": "strategies",
    "select_batches": "strategies",
    "budget": "strategies",
    "apportion": "blocks",
    "STRATEGIES": "strategies",
    "last_layer_features": "features",
    "find_head": "features",
    "GradFeatures": "kernels",
    "GradKernel": "kernels",
    "DenseGrads": "kernels",
    "match_error": "kernels",
    "SubsetLoader": "loader",
    "SubsetTimings": "loader",
}

__all__ = [
    "STRATEGIES",
    "DenseGrads",
    "GradFeatures",
    "GradKernel",
    "SubsetLoader",
    "SubsetTimings",
    "apportion",
    "budget",
    "find_head",
    "last_layer_features",
    "match_error",
    "select",
    "select_batches",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hpd.subset' has no attribute {name!r}")
    return getattr(import_module(f"hpd.subset.{module}"), name)
