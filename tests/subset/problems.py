"""Random selection problems for the subset property tests (hypothesis strategies).

Shapes: 1-6 classes of 1-2 or up to ``max_class`` samples (imbalanced, some tiny), shuffled
labels with arbitrary values, 1-``max_dim`` dimensions, clustered / Gaussian / duplicated /
positive-leaning / constant points at scales from 1e-3 to 1e3, fractions from 0.005 to 1, ``max_block`` from 1
to 256, seeds 0-3.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hpd.subset.blocks import apportion


def bounded(examples: int) -> settings:
    """Few examples, no deadline: each property test stays within a few seconds on 2 busy
    cores."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


@dataclass(frozen=True)
class Problem:
    """Gradients, labels and ``select``'s arguments."""

    X: np.ndarray  # [N, d] float64
    labels: np.ndarray  # [N] class labels (arbitrary integers, shuffled)
    fraction: float
    max_block: int
    seed: int

    @property
    def groups(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.labels == c) for c in np.unique(self.labels)]

    @property
    def quotas(self) -> list[int]:
        return apportion(expected_size(self.fraction, len(self.X)), [len(g) for g in self.groups])


def expected_size(fraction: float, n: int) -> int:
    """Documented subset size: ``ceil(fraction * n)``, at least 1 and at most n."""
    return min(n, max(1, math.ceil(round(fraction * n, 6))))


def points(rng: np.random.Generator, n: int, dim: int, kind: str) -> np.ndarray:
    """n points [n, dim] of one ``kind``, float64."""
    scale = 10.0 ** rng.uniform(-3, 3)
    if kind == "constant":  # every distance 0: every gain 0, all ties
        return np.tile(rng.standard_normal(dim) * scale, (n, 1))
    if kind == "positive":  # atoms correlated with their sum (as gradients of a loss are)
        return (np.abs(rng.standard_normal((n, dim))) + 0.5 * rng.standard_normal((n, dim))) * scale
    if kind == "clusters":
        centres = rng.standard_normal((4, dim)) * 5
        X = centres[rng.integers(0, 4, n)] + rng.standard_normal((n, dim))
    else:
        X = rng.standard_normal((n, dim))
    if kind == "duplicates" and n > 1:
        X[rng.choice(n, n // 3, replace=False)] = X[rng.integers(0, n, n // 3)]
    return X * scale


@st.composite
def problems(draw: Callable[..., Any], max_class: int = 120, max_dim: int = 24) -> Problem:
    """A ``Problem``: classes of 1-2 or 3-``max_class`` samples, 1-``max_dim`` dimensions."""
    sizes = draw(
        st.lists(st.one_of(st.integers(1, 2), st.integers(3, max_class)), min_size=1, max_size=6)
    )
    dim = draw(st.integers(1, max_dim))
    fraction = draw(
        st.one_of(
            st.sampled_from([0.05, 0.1, 0.125, 0.2, 0.5, 1.0]),
            st.floats(0.005, 1.0, allow_nan=False),
        )
    )
    max_block = draw(st.sampled_from([1, 2, 3, 4, 7, 8, 16, 31, 64, 256]))
    kind = draw(st.sampled_from(["clusters", "gaussian", "positive", "duplicates", "constant"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = rng.permutation(np.repeat(3 * np.arange(len(sizes)) + 7, sizes))
    X = points(rng, len(labels), dim, kind)
    return Problem(X, labels, fraction, max_block, draw(st.integers(0, 3)))
