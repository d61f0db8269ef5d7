"""Subset selection: which samples (or whole mini-batches) to train on, and with what weights.

Owns ``select`` (per-sample: ``random``, ``gradmatch``, ``craig``; per class when labels are
given, budgets split by ``blocks.apportion``), ``select_batches`` (per-batch: atoms are
mini-batch gradient sums) and ``budget``. Convention: ``sum_i weights_i * grads[indices_i]``
approximates ``sum_j grads_j``, the full-data gradient; indices are returned sorted, never
repeated, and refer to the rows of ``grads``. Deterministic for a seed. Only GRAD-MATCH takes
a ``ridge`` (its regularisation coefficient ``lam``); the other strategies refuse a nonzero one.

GRAD-MATCH's NNLS optimum often needs fewer atoms than the budget (no atom correlates
positively with the residual any more; more atoms cannot improve the match). The rest is
filled with random points of weight ``fill_weight * n / k`` and the chosen atoms' weights are
scaled by ``1 - fill_weight * n_fill / k`` (the fill's expected share), so the total still
matches in expectation. ``fill_weight = 1`` (default) mixes the OMP subset and a random subset in
proportion to their sizes; smaller values keep the match closer to OMP's but train on the fill
less. Measured (Fashion-MNIST, MLP features, 20,000 samples, per class; matching error):

    fraction        5%      10%     12.5%   20%     30%
    random          0.466   0.308   0.246   0.210   0.135
    fill_weight 0.1 0.018   0.006   0.008   0.014   0.018
    fill_weight 1   0.018   0.051   0.080   0.135   0.178

yet 12.5% subsets trained to 86.8% test accuracy with 1 and 81.5% with 0.1 (bench/subset.py,
MLP, 15 epochs; random: 86.5%). CORDS gave fill points weight 1, far below the OMP weights.
(That table is for whole classes. Large classes with a large budget are now matched block by
block, ``hpd.subset.gradmatch``, which uses most of the budget and needs little fill; 20,000
samples of a converged MLP, fill_weight 1, random / whole classes / blocks:
5%: 0.50 / 0.028 / 0.135, 10%: 0.41 / 0.069 / 0.089, 12.5%: 0.36 / 0.148 / 0.066,
20%: 0.24 / 0.182 / 0.045, 30%: 0.22 / 0.237 / 0.070. ``max_block`` >= the class size keeps
whole classes.)

Must never: run a model, iterate a dataset or know about epochs (the loader does that).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from hpd.subset.blocks import apportion
from hpd.subset.craig import craig
from hpd.subset.gradmatch import gradmatch
from hpd.subset.kernels import GradKernel, as_kernel
from hpd.subset.omp import check_ridge

Strategy = Literal["random", "gradmatch", "craig"]
STRATEGIES: tuple[str, ...] = ("random", "gradmatch", "craig")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def budget(fraction: float, n: int) -> int:
    """Subset size ``ceil(fraction * n)``, at least 1 (for n > 0) and at most n."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if n <= 0:
        return 0
    return min(n, max(1, math.ceil(round(fraction * n, 6))))


def _rng(seed: int, *salt: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *salt]))


def _torch_seed(seed: int) -> int:
    return int(_rng(seed, 0xC7A16).integers(1 << 62))


def _num_rows(grads: Any) -> int:
    if isinstance(grads, int):
        return grads
    if isinstance(grads, GradKernel):
        return grads.n
    return len(grads)


def _groups(n: int, labels: Any) -> list[IntArray]:
    if labels is None:
        return [np.arange(n, dtype=np.int64)]
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    lab = lab.reshape(-1)
    if lab.shape[0] != n:
        raise ValueError(f"labels has {lab.shape[0]} entries for {n} gradient rows")
    return [np.flatnonzero(lab == c).astype(np.int64) for c in np.unique(lab)]


def select(
    strategy: str,
    grads: Any,
    fraction: float,
    *,
    labels: Any = None,
    seed: int = 0,
    tol: float = 1e-4,
    fill_weight: float = 1.0,
    max_block: int = 256,
    ridge: float = 0.0,
) -> tuple[IntArray, FloatArray]:
    """Pick ``ceil(fraction * n)`` rows of ``grads`` and weights for them.

    ``grads``: [n, d] torch tensor (any device) or numpy array, or a ``GradKernel`` such as the
    factored ``GradFeatures`` from ``last_layer_features`` (for ``random`` an int n is enough).
    ``labels``: [n]; when given, the budget is split over classes in proportion to their sizes
    and each class is solved on its own. ``tol``: GRAD-MATCH's relative residual stop;
    ``fill_weight``: weight of GRAD-MATCH's random fill points, as a fraction of ``n / k``
    (see the module docstring).
    ``max_block``: CRAIG and GRAD-MATCH split larger groups into blocks of nearby rows, at most
    about this many each (raised where a group's budget needs bigger blocks; see
    ``hpd.subset.craig`` and ``hpd.subset.gradmatch``).
    ``ridge``: GRAD-MATCH's regularisation coefficient (CORDS's ``lam``), ``ridge * ||w||^2``
    added to OMP-NNLS's objective; a finite number >= 0 in the units of the gradient Gram
    matrix (those of ``||g_i||^2``, so it depends on how ``grads`` are scaled). Other
    strategies refuse a nonzero one.
    Returns ``(indices, weights)``: sorted int64 row indices and float64 weights.
    """
    _check_strategy(strategy, ridge)
    n = _num_rows(grads)
    k = budget(fraction, n)
    groups = _groups(n, labels)
    quotas = apportion(k, [len(g) for g in groups])
    if strategy == "random":
        return _random(groups, quotas, seed)
    kernel = as_kernel(grads)
    if strategy == "craig":
        parts = craig(kernel, groups, quotas, max_block=max_block, seed=_torch_seed(seed))
    else:
        rngs = [_rng(seed, gi) for gi in range(len(groups))]
        parts = gradmatch(
            kernel, groups, quotas, rngs, tol=tol, fill_weight=fill_weight,
            max_block=max_block, seed=_torch_seed(seed), ridge=ridge,
        )  # fmt: skip
    return _sorted([p for p, _ in parts], [w.astype(np.float64) for _, w in parts])


def _check_strategy(strategy: str, ridge: float) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    check_ridge_for(strategy, ridge)


def check_ridge_for(
    strategy: str, ridge: object, gradmatch: tuple[str, ...] = ("gradmatch",)
) -> float:
    """``ridge`` validated, and refused unless ``strategy`` is one of ``gradmatch`` (a
    silently ignored one would make a searched ``lam`` look like it had no effect)."""
    value = check_ridge(ridge)
    if value != 0.0 and strategy not in gradmatch:
        raise ValueError(f"ridge={ridge!r} applies to strategy 'gradmatch' only, not {strategy!r}")
    return value


def _random(groups: list[IntArray], quotas: list[int], seed: int) -> tuple[IntArray, FloatArray]:
    """Stratified random: ``quotas[g]`` rows of each group, weight ``n_g / k_g``."""
    idx_parts: list[IntArray] = []
    w_parts: list[FloatArray] = []
    for gi, (grp, kg) in enumerate(zip(groups, quotas, strict=True)):
        if kg == 0:
            continue
        pos = np.sort(_rng(seed, gi).choice(len(grp), size=kg, replace=False)).astype(np.int64)
        idx_parts.append(grp[pos])
        w_parts.append(np.full(kg, len(grp) / kg))
    return _sorted(idx_parts, w_parts)


def select_batches(
    strategy: str,
    grads: Any,
    batches: Sequence[Any],
    fraction: float,
    *,
    seed: int = 0,
    tol: float = 1e-4,
    fill_weight: float = 1.0,
    ridge: float = 0.0,
) -> tuple[IntArray, FloatArray]:
    """Pick ``ceil(fraction * len(batches))`` whole batches (GRAD-MATCH-PB and friends).

    ``batches``: index arrays into the rows of ``grads``. The atoms are the batches' gradient
    sums, so ``sum_b weights_b * sum_{i in batches[b]} g_i`` approximates ``sum_j g_j`` when the
    batches partition the rows. ``ridge``: as for ``select``, but the Gram is that of the
    batch sums (its scale grows with the batch size). Returns sorted batch positions and their
    weights.
    """
    _check_strategy(strategy, ridge)
    nb = len(batches)
    k = budget(fraction, nb)
    rng = _rng(seed, 1 << 20)
    if strategy == "random":
        pos = np.sort(rng.choice(nb, size=k, replace=False)).astype(np.int64)
        return pos, np.full(k, nb / k)
    atoms = as_kernel(grads).batch_sums(batches)
    every = [np.arange(nb, dtype=np.int64)]
    if strategy == "gradmatch":  # batches are few: whole-set OMP, no blocks
        pos, w = gradmatch(atoms, every, [k], [rng], tol=tol, fill_weight=fill_weight,
                           max_block=nb, ridge=ridge)[0]  # fmt: skip
    else:  # one block: plain greedy facility location
        pos, w = craig(atoms, every, [k], max_block=nb)[0]
    return _sorted([pos], [w])


def _sorted(idx_parts: list[IntArray], w_parts: list[FloatArray]) -> tuple[IntArray, FloatArray]:
    if not idx_parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    idx = np.concatenate(idx_parts).astype(np.int64)
    w = np.concatenate(w_parts).astype(np.float64)
    order = np.argsort(idx, kind="stable")
    return idx[order], w[order]
