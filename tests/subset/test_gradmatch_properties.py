"""Property tests for GRAD-MATCH's blocked solver against the plain one.

``omp.nnls_omp_blocks`` (exact OMP-NNLS on many blocks in lockstep) against ``omp.nnls_omp``
(block=1: exact OMP-NNLS, one problem at a time) on each block, and ``select("gradmatch")``
end to end: whole classes against ``nnls_omp`` as ``gradmatch`` calls it, blocked classes
block by block (the blocks ``gradmatch`` split them into, their budgets the documented
``apportion`` of the class's), sizes, and the random fill's documented arithmetic.

Why the comparisons hold: both solvers are Lawson-Hanson stopped at k atoms, one atom per step,
the most correlated first; the match ``||A_S^T w - t||`` never grows along the way. So while
the plain run stays above ``tol`` (it only checks ``tol`` every few steps, the blocked one at
every step) both take the same steps to the same end (budget or NNLS optimum), and once the
plain run ends at or below ``tol`` the blocked one has stopped at the first step that reached
it. Exact duplicates are the one tie: either copy may enter, so there only the match is
compared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from hpd.subset import DenseGrads, apportion, select  # noqa: E402
from hpd.subset import gradmatch as gradmatch_module  # noqa: E402
from hpd.subset.blocks import Blocks  # noqa: E402
from hpd.subset.omp import nnls_omp, nnls_omp_blocks  # noqa: E402
from tests.subset.problems import Problem, bounded, expected_size, points, problems  # noqa: E402


def relative_match(A: np.ndarray, S: np.ndarray, w: np.ndarray) -> float:
    """``||A_S^T w - t|| / ||t||`` with ``t`` the sum of all atoms (0 when t = 0)."""
    t = A.sum(0)
    tn = float(np.linalg.norm(t))
    approx = w @ A[S] if len(S) else np.zeros_like(t)
    return float(np.linalg.norm(approx - t)) / tn if tn > 0 else float(np.linalg.norm(approx))


def check_against_plain(A: np.ndarray, S: np.ndarray, w: np.ndarray, k: int, tol: float) -> None:
    """One block's OMP-NNLS result (positions ``S`` into the block's atoms ``A`` [n, d], weights
    ``w``) against ``nnls_omp(block=1)`` on the block alone, budget k, the same ``tol``."""
    n = len(A)
    assert len(S) <= min(k, n) and len(np.unique(S)) == len(S)
    assert ((S >= 0) & (n > S)).all()
    assert np.isfinite(w).all() and (w > 0).all()
    plain = nnls_omp(DenseGrads(torch.from_numpy(A)), k, tol=tol, block=1)
    t = A.sum(0)
    if not np.linalg.norm(t) > 0:  # nothing to match: no atom
        assert len(S) == 0 == len(plain.positions)
        return
    if len(S):  # the weights are the least-squares optimum on their support (positive)
        AS = A[S]
        grad = AS @ (w @ AS - t)
        assert np.linalg.norm(grad) <= 1e-5 * np.linalg.norm(AS) * np.linalg.norm(t)
    r, r_plain = relative_match(A, S, w), plain.residual
    if r_plain > tol * (1 + 1e-9) + 1e-12:  # the plain run never reached tol: the same run
        assert abs(r - r_plain) <= 1e-7 + 1e-6 * r_plain
        duplicates = len(np.unique(A, axis=0)) < n
        if r_plain > 1e-6 and not duplicates:  # clear of the optimum's rounding noise
            mine = dict(zip(S.tolist(), w.tolist(), strict=True))
            theirs = dict(zip(plain.positions.tolist(), plain.weights.tolist(), strict=True))
            assert mine.keys() == theirs.keys()
            np.testing.assert_allclose(
                [mine[j] for j in sorted(mine)], [theirs[j] for j in sorted(mine)], rtol=1e-6
            )
    else:  # stopped at the first step that reached tol, or where the plain run ended
        assert r <= max(tol, r_plain) * (1 + 1e-6) + 1e-9


@st.composite
def omp_blocks(draw: Callable[..., Any]) -> tuple[list[np.ndarray], list[int], float]:
    """1-6 blocks of 1-30 atoms in 1-20 dimensions (Gaussian, positive-leaning, duplicated,
    constant or all-zero), budgets from 0 to beyond the block's size, a tolerance."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dim = draw(st.integers(1, 20))
    sizes = draw(st.lists(st.integers(1, 30), min_size=1, max_size=6))
    kinds = st.sampled_from(["gaussian", "positive", "duplicates", "constant", "zero"])
    As = []
    for n in sizes:
        kind = draw(kinds)
        As.append(np.zeros((n, dim)) if kind == "zero" else points(rng, n, dim, kind))
    budgets = [draw(st.integers(0, n + 2)) for n in sizes]
    return As, budgets, draw(st.sampled_from([0.0, 1e-4, 1e-2, 0.3]))


@bounded(40)
@given(omp_blocks())
def test_blocks_solver_is_plain_omp_per_block(
    problem: tuple[list[np.ndarray], list[int], float],
) -> None:
    """``nnls_omp_blocks`` on padded block Grams: supports within budget, unique, positive
    weights (0 on empty slots), each block as ``check_against_plain``."""
    As, budgets, tol = problem
    m = max(len(A) for A in As)
    K = torch.zeros((len(As), m, m), dtype=torch.float64)
    for b, A in enumerate(As):
        K[b, : len(A), : len(A)] = torch.from_numpy(A @ A.T)
    S, w = nnls_omp_blocks(K, torch.tensor(budgets), tol=tol)
    assert S.shape == w.shape == (len(As), max(budgets))
    assert (w[S < 0] == 0).all()
    for b, A in enumerate(As):
        on = S[b] >= 0
        check_against_plain(A, S[b][on].numpy(), w[b][on].numpy(), budgets[b], tol)


@contextmanager
def captured_blocks() -> Iterator[list[Blocks]]:
    """The blocks ``gradmatch`` splits large classes into (the solver still runs unchanged)."""
    real = gradmatch_module.split
    calls: list[Blocks] = []

    def spy(*args: Any, **kwargs: Any) -> Blocks:
        out = real(*args, **kwargs)
        calls.append(out)
        return out

    gradmatch_module.split = spy  # type: ignore[assignment]
    try:
        yield calls
    finally:
        gradmatch_module.split = real  # type: ignore[assignment]


def check_sizes(p: Problem, idx: np.ndarray, w: np.ndarray) -> None:
    """``ceil(fraction * n)`` sorted, unique rows in range, ``apportion``-ed over the classes."""
    assert idx.dtype == np.int64 and w.dtype == np.float64
    assert len(idx) == len(w) == expected_size(p.fraction, len(p.X))
    assert (np.diff(idx) > 0).all() and idx.min() >= 0 and idx.max() < len(p.X)
    for grp, q in zip(p.groups, p.quotas, strict=True):
        assert int(np.isin(idx, grp).sum()) == q


@bounded(40)
@given(
    problems(max_class=200, max_dim=16),
    st.sampled_from([0.25, 1.0]),
    st.sampled_from([1e-4, 1e-2]),
)
def test_gradmatch_is_plain_omp_per_class_or_block_plus_fill(
    p: Problem, fill_weight: float, tol: float
) -> None:
    """``select("gradmatch")``: exact sizes; with ``fill_weight = 0`` the fill has weight 0 and
    the rest is the solver's (whole classes: ``nnls_omp`` as ``gradmatch`` calls it; blocked
    classes: ``check_against_plain`` per block, budgets ``apportion``-ed by block size); with
    ``fill_weight = f`` the same rows, the solver's weights times ``1 - f n_fill / k`` and the
    fill's ``f n / k`` (so a class's weights sum to ``(1 - lam) sum(w_omp) + f n n_fill / k``)."""
    kw = {"labels": p.labels, "seed": p.seed, "max_block": p.max_block, "tol": tol}
    with captured_blocks() as calls:
        idx, w0 = select("gradmatch", p.X, p.fraction, fill_weight=0.0, **kw)
    idx_f, wf = select("gradmatch", p.X, p.fraction, fill_weight=fill_weight, **kw)
    check_sizes(p, idx, w0)
    np.testing.assert_array_equal(idx, idx_f)
    assert np.isfinite(w0).all() and (w0 >= 0).all() and np.isfinite(wf).all() and (wf > 0).all()
    label_of = dict(zip(range(len(p.X)), p.labels.tolist(), strict=True))
    blocks_of: dict[int, list[np.ndarray]] = {}
    for blocks in calls:
        for row in blocks.pos.numpy():
            row = row[row >= 0]
            classes = {label_of[int(i)] for i in row}
            assert len(classes) == 1  # a block never mixes classes
            blocks_of.setdefault(classes.pop(), []).append(row)
    event(f"blocked classes: {len(blocks_of)}")
    for grp, k in zip(p.groups, p.quotas, strict=True):
        if k == 0:
            continue
        n, mine = len(grp), np.isin(idx, grp)
        rows, a, b = idx[mine], w0[mine], wf[mine]
        label = int(p.labels[grp[0]])
        whole = label not in blocks_of
        res = nnls_omp(DenseGrads(torch.from_numpy(p.X[grp])), k, tol=tol) if whole else None
        # fill has weight 0 with fill_weight 0; solver atoms have positive weights. One case
        # reads alike: no atom at all (all fill, weight n / k whatever fill_weight) and atoms
        # of weight n / k each (e.g. every row of a class); the plain solver tells them apart
        # (a blocked class always has atoms: each block has a budget and a nonzero target)
        omp = a > 0
        if res is not None and len(res.positions) == 0:
            assert (a == n / k).all()
            omp[:] = False
        lam = fill_weight * int((~omp).sum()) / k
        np.testing.assert_allclose(b[omp], a[omp] * (1 - lam), rtol=1e-12)
        fill_w = n / k if not omp.any() else fill_weight * n / k
        np.testing.assert_allclose(b[~omp], fill_w, rtol=1e-12)
        if res is not None:  # a whole class: exactly gradmatch's nnls_omp call
            support = grp[res.positions.numpy()]
            assert sorted(rows[omp].tolist()) == sorted(support.tolist())
            ref = dict(zip(support.tolist(), res.weights.tolist(), strict=True))
            np.testing.assert_allclose(a[omp], [ref[i] for i in rows[omp].tolist()], rtol=1e-9)
            continue
        brows = blocks_of[label]
        assert sorted(np.concatenate(brows).tolist()) == grp.tolist()  # they partition it
        budgets = apportion(k, [len(r) for r in brows])
        weight = dict(zip(rows[omp].tolist(), a[omp].tolist(), strict=True))
        for r, kb in zip(brows, budgets, strict=True):
            local = np.flatnonzero(np.isin(r, rows[omp]))
            ws = np.array([weight[int(i)] for i in r[local]])
            check_against_plain(p.X[r], local, ws, kb, tol)
