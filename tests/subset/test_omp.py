"""OMP-NNLS (GRAD-MATCH's solver) against scipy's NNLS and the other oracles of §4.6."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
scipy_optimize = pytest.importorskip("scipy.optimize")

from hpd.subset import DenseGrads, match_error  # noqa: E402
from hpd.subset.omp import _State, check_ridge, nnls_omp, nnls_omp_blocks  # noqa: E402


def _objective(
    A: np.ndarray, t: np.ndarray, positions: torch.Tensor, weights: torch.Tensor
) -> float:
    w = np.zeros(A.shape[0])
    w[positions.numpy()] = weights.numpy()
    return float(np.linalg.norm(A.T @ w - t))


@pytest.mark.parametrize(("n", "d", "seed"), [(30, 12, 0), (12, 30, 1), (60, 40, 2), (50, 50, 3)])
@pytest.mark.parametrize("block", [1, 4])
def test_unbounded_k_equals_scipy_nnls(n: int, d: int, seed: int, block: int) -> None:
    """Oracle 3: with k >= n and tol = 0 the result is the NNLS optimum (Lawson-Hanson)."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, d))
    t = rng.standard_normal(d) + A[:3].sum(0)
    res = nnls_omp(
        DenseGrads(torch.from_numpy(A)), n, target=torch.from_numpy(t), tol=0.0, block=block
    )
    _, best = scipy_optimize.nnls(A.T, t)
    ours = _objective(A, t, res.positions, res.weights)
    assert abs(ours - best) <= 1e-9 * max(best, 1.0)
    assert (res.weights > 0).all()
    assert len(set(res.positions.tolist())) == len(res.positions)
    assert res.residual == pytest.approx(ours / np.linalg.norm(t), rel=1e-9, abs=1e-12)


def test_weights_are_nnls_on_the_returned_support() -> None:
    """Oracle 4: for the support it returns, the weights are NNLS's weights."""
    rng = np.random.default_rng(4)
    A = np.abs(rng.standard_normal((80, 30)))
    res = nnls_omp(DenseGrads(torch.from_numpy(A)), 10, tol=0.0)
    S = res.positions.numpy()
    x, _ = scipy_optimize.nnls(A[S].T, A.sum(0))
    np.testing.assert_allclose(res.weights.numpy(), x, rtol=1e-8, atol=1e-10)


def test_planted_support_is_recovered() -> None:
    """Oracle 6: unit-norm atoms, target = 3 of them with positive weights."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((200, 400))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    support, w_true = np.array([7, 42, 150]), np.array([1.5, 0.7, 2.2])
    t = w_true @ A[support]
    res = nnls_omp(DenseGrads(torch.from_numpy(A)), 10, target=torch.from_numpy(t), tol=1e-10)
    order = np.argsort(res.positions.numpy())
    np.testing.assert_array_equal(res.positions.numpy()[order], support)
    np.testing.assert_allclose(res.weights.numpy()[order], w_true, rtol=1e-9)


def test_residual_non_increasing_in_k(softmax_features) -> None:
    """Oracle 7 (first half): the matching error of OMP-NNLS never grows with k."""
    F = softmax_features.subset(torch.nonzero(softmax_features.labels == 0).squeeze(1))
    errors = []
    for k in (1, 2, 4, 8, 16, 32, 64):
        res = nnls_omp(F, k, tol=0.0)
        errors.append(res.residual)
        assert match_error(F, res.positions, res.weights) == pytest.approx(res.residual, rel=1e-4)
    assert all(b <= a * (1 + 1e-6) for a, b in itertools.pairwise(errors))
    assert errors[-1] < 0.1 * errors[0]


def test_greedy_is_no_better_than_brute_force() -> None:
    """Oracle 5 (sanity): the best support of size <= k is at least as good as greedy's."""
    rng = np.random.default_rng(6)
    for _ in range(5):
        A = rng.standard_normal((10, 6))
        t = np.abs(rng.standard_normal(6)) + A[:2].sum(0)
        res = nnls_omp(DenseGrads(torch.from_numpy(A)), 3, target=torch.from_numpy(t), tol=0.0)
        greedy = _objective(A, t, res.positions, res.weights)
        brute = min(
            scipy_optimize.nnls(A[list(S)].T, t)[1]
            for r in (1, 2, 3)
            for S in itertools.combinations(range(10), r)
        )
        assert brute <= greedy + 1e-12


def test_block_entry_never_returns_an_empty_support() -> None:
    """Oracle 10: entering a block must not drop every new atom when some correlate positively."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal(20)
    A = base + 0.01 * rng.standard_normal((50, 20))  # near-duplicates: joint solves go negative
    res = nnls_omp(DenseGrads(torch.from_numpy(A)), 8, block=8, tol=0.0)
    assert len(res.positions) >= 1
    assert res.residual < 1.0


def test_dependent_atoms_are_skipped_not_looped_on() -> None:
    A = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    res = nnls_omp(DenseGrads(torch.from_numpy(A)), 4, tol=0.0)
    assert res.residual < 1e-12
    assert len(res.positions) == 2


def test_closed_form_removal_equals_refactorisation() -> None:
    """The O(s^2) removal update of the inverse Cholesky factor matches a fresh one."""
    rng = np.random.default_rng(8)
    A = torch.from_numpy(rng.standard_normal((12, 30)))
    kern = DenseGrads(A)
    st = _State(kern, 12, kern.correlate(A.sum(0)), 0.0, gram=True)
    assert st.extend(list(range(9)), kern.columns(list(range(9))), 1e-10)
    st.delete_many([6, 2])
    keep = [0, 1, 3, 4, 5, 7, 8]
    assert st.S[: st.s].tolist() == keep
    L = np.linalg.cholesky((A[keep] @ A[keep].T).numpy())
    np.testing.assert_allclose(st.Li[:7, :7], np.linalg.inv(L), atol=1e-10)


def test_float32_features_on_cpu_tensor_and_gram_free_mode_agree(softmax_features) -> None:
    F = softmax_features.subset(torch.nonzero(softmax_features.labels == 1).squeeze(1))
    with_gram = nnls_omp(F, 20, block=1)
    without = nnls_omp(F, 20, block=1, gram_bytes=0)
    assert with_gram.positions.tolist() == without.positions.tolist()
    assert with_gram.residual == pytest.approx(without.residual, rel=1e-3)


def _block_grams(As: list[np.ndarray]) -> torch.Tensor:
    """Grams of atom sets of different sizes, zero-padded to one [nb, m, m] tensor."""
    m = max(len(A) for A in As)
    K = torch.zeros((len(As), m, m), dtype=torch.float64)
    for b, A in enumerate(As):
        K[b, : len(A), : len(A)] = torch.from_numpy(A @ A.T)
    return K


def test_blocks_solver_equals_exact_omp_per_block() -> None:
    """``nnls_omp_blocks`` (all blocks in lockstep) = ``nnls_omp(block=1)`` on each block
    separately, budgets from 1 to beyond the block size (then: the NNLS optimum, oracle 3)."""
    rng = np.random.default_rng(11)
    As = [np.abs(rng.standard_normal((n, 12))) + 0.5 * rng.standard_normal((n, 12)) for n in
          (40, 25, 40, 33, 7)]  # fmt: skip
    budgets = torch.tensor([3, 8, 15, 40, 7])
    S, w = nnls_omp_blocks(_block_grams(As), budgets, tol=0.0)
    _assert_blocks_match_nnls_omp(As, budgets, S, w)
    t = As[3].sum(0)  # budget >= n: the unconstrained NNLS optimum
    _, best = scipy_optimize.nnls(As[3].T, t)
    on = S[3] >= 0
    ours = np.linalg.norm(w[3][on].numpy() @ As[3][S[3][on].numpy()] - t)
    assert abs(ours - best) <= 1e-9 * max(best, 1.0)


def test_blocks_solver_skips_dependent_atoms_and_stops_at_tol() -> None:
    A = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    S, w = nnls_omp_blocks(_block_grams([A, A[:2]]), torch.tensor([4, 2]), tol=0.0)
    on = S[0] >= 0
    approx = w[0][on].numpy() @ A[S[0][on].numpy()]
    np.testing.assert_allclose(approx, A.sum(0), atol=1e-12)
    assert int(on.sum()) == 2
    assert int((S[1] >= 0).sum()) == 1  # two equal atoms: one carries the whole sum
    rng = np.random.default_rng(12)
    B = rng.standard_normal((30, 20))
    loose = nnls_omp_blocks(_block_grams([B]), torch.tensor([30]), tol=0.5)[0]
    tight = nnls_omp_blocks(_block_grams([B]), torch.tensor([30]), tol=0.0)[0]
    assert 0 < int((loose >= 0).sum()) < int((tight >= 0).sum())


# -- ridge (GRAD-MATCH's regularisation) -------------------------------------------------------


def _ridged_nnls(A: np.ndarray, t: np.ndarray, ridge: float) -> np.ndarray:
    """Oracle: min_{w >= 0} ||A^T w - t||^2 + ridge ||w||^2 as plain NNLS on the augmented
    system [A^T; sqrt(ridge) I] w = [t; 0] (unique: the objective is strictly convex)."""
    n = A.shape[0]
    M = np.vstack([A.T, math.sqrt(ridge) * np.eye(n)])
    return scipy_optimize.nnls(M, np.concatenate([t, np.zeros(n)]))[0]


def _dense(n: int, positions: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    w = np.zeros(n)
    w[positions.numpy()] = weights.numpy()
    return w


@pytest.mark.parametrize("ridge", [0.3, 5.0, 200.0])
@pytest.mark.parametrize(("block", "gram_bytes"), [(1, 1 << 28), (4, 1 << 28), (1, 0)])
def test_unbounded_k_with_ridge_equals_ridged_nnls(
    ridge: float, block: int, gram_bytes: int
) -> None:
    """With k >= n and tol = 0, ``nnls_omp(ridge=)`` is the ridged NNLS optimum, whether the
    Gram rows are cached or not and whatever the block size."""
    rng = np.random.default_rng(20)
    A = rng.standard_normal((40, 15)) + 0.3
    t = A.sum(0)
    res = nnls_omp(DenseGrads(torch.from_numpy(A)), 40, tol=0.0, ridge=ridge, block=block,
                   gram_bytes=gram_bytes)  # fmt: skip
    want = _ridged_nnls(A, t, ridge)
    np.testing.assert_allclose(_dense(40, res.positions, res.weights), want, atol=1e-9, rtol=1e-7)
    assert (res.weights > 0).all()
    match = np.linalg.norm(want @ A - t) / np.linalg.norm(t)
    assert res.residual == pytest.approx(match, rel=1e-7)  # the match alone, no ridge term


def test_ridged_weights_solve_the_ridged_problem_on_the_support() -> None:
    """With a bounded k, the weights are the ridged NNLS weights of the returned support."""
    rng = np.random.default_rng(21)
    A = np.abs(rng.standard_normal((80, 30)))
    res = nnls_omp(DenseGrads(torch.from_numpy(A)), 10, tol=0.0, ridge=50.0)
    S = res.positions.numpy()
    assert len(S) == 10
    np.testing.assert_allclose(res.weights.numpy(), _ridged_nnls(A[S], A.sum(0), 50.0), rtol=1e-8)


def test_blocks_solver_with_ridge_equals_exact_omp_per_block() -> None:
    """``nnls_omp_blocks(ridge=)`` = ``nnls_omp(block=1, ridge=)`` on each block; with budget
    >= the block size, the ridged NNLS optimum."""
    rng = np.random.default_rng(22)
    As = [np.abs(rng.standard_normal((n, 12))) + 0.5 * rng.standard_normal((n, 12)) for n in
          (40, 25, 33)]  # fmt: skip
    budgets = torch.tensor([5, 12, 33])
    ridge = 7.0
    S, w = nnls_omp_blocks(_block_grams(As), budgets, tol=0.0, ridge=ridge)
    _assert_blocks_match_nnls_omp(As, budgets, S, w, ridge=ridge)
    on = S[2] >= 0
    dense = np.zeros(33)
    dense[S[2][on].numpy()] = w[2][on].numpy()
    np.testing.assert_allclose(dense, _ridged_nnls(As[2], As[2].sum(0), ridge), atol=1e-9)


def test_blocks_solver_with_ridge_stops_as_soon_as_the_match_reaches_tol() -> None:
    """The ``tol`` stop measures the match alone: with a ridge the solver stops at the first
    support size whose relative residual ``||A_S^T w - t|| / ||t||`` is <= tol (not later, as
    it would if the ridge term were counted as residual)."""
    rng = np.random.default_rng(25)
    A = np.abs(rng.standard_normal((30, 40))) + 0.3 * rng.standard_normal((30, 40))
    K, t = _block_grams([A]), A.sum(0)
    ridge = float(np.square(A).sum(1).mean())

    def run(budget: int, tol: float) -> tuple[int, float]:
        S, w = nnls_omp_blocks(K, torch.tensor([budget]), tol=tol, ridge=ridge)
        on = S[0] >= 0
        approx = w[0][on].numpy() @ A[S[0][on].numpy()]
        return int(on.sum()), float(np.linalg.norm(approx - t) / np.linalg.norm(t))

    path = [run(c, 0.0) for c in range(1, 31)]
    assert [size for size, _ in path] == list(range(1, 31))  # no back-tracking here
    for tol in (0.3, 0.2, 0.1):
        first = next(size for size, r in path if r <= tol)
        size, r = run(30, tol)
        assert size == first
        assert r == pytest.approx(path[first - 1][1], rel=1e-9)


def test_ridge_zero_is_the_unridged_solver() -> None:
    """``ridge=0`` changes nothing: the same supports and bit-identical weights as no ridge."""
    rng = np.random.default_rng(23)
    A = rng.standard_normal((60, 20))
    kern = DenseGrads(torch.from_numpy(A))
    for block in (1, 4):
        a = nnls_omp(kern, 15, tol=0.0, block=block)
        b = nnls_omp(kern, 15, tol=0.0, block=block, ridge=0.0)
        assert a.positions.tolist() == b.positions.tolist()
        assert torch.equal(a.weights, b.weights) and a.residual == b.residual
    K, budgets = _block_grams([A[:30], A[30:]]), torch.tensor([8, 30])
    Sa, wa = nnls_omp_blocks(K, budgets, tol=0.0)
    Sb, wb = nnls_omp_blocks(K, budgets, tol=0.0, ridge=0.0)
    assert torch.equal(Sa, Sb) and torch.equal(wa, wb)


def test_large_ridge_shrinks_the_weights() -> None:
    """A ridge bounds the weights by ``||b_S|| / ridge`` (b = correlations with the target):
    a large one shrinks them far below the unridged ones, which stay positive; and on the
    unbounded problem the weights' norm never grows with the ridge."""
    rng = np.random.default_rng(24)
    A = np.abs(rng.standard_normal((80, 30))) + 0.2 * rng.standard_normal((80, 30))
    kern = DenseGrads(torch.from_numpy(A))
    b = A @ A.sum(0)
    big = 100.0 * float(np.square(A).sum(1).max())
    for block in (1, 4):
        plain = nnls_omp(kern, 10, tol=0.0, block=block)
        ridged = nnls_omp(kern, 10, tol=0.0, block=block, ridge=big)
        bound = np.linalg.norm(b[ridged.positions.numpy()]) / big
        assert float(ridged.weights.norm()) <= bound * (1 + 1e-9)
        assert float(ridged.weights.norm()) < 0.2 * float(plain.weights.norm())
        assert (ridged.weights > 0).all()
        assert ridged.residual > plain.residual  # the match pays for the smaller weights
    norms = [float(nnls_omp(kern, 80, tol=0.0, ridge=r).weights.norm()) for r in
             (0.0, 1.0, 10.0, 100.0, big)]  # fmt: skip
    assert all(b2 <= a2 * (1 + 1e-9) for a2, b2 in itertools.pairwise(norms))
    K, budgets = _block_grams([A[:40], A[40:]]), torch.tensor([10, 10])
    w0 = nnls_omp_blocks(K, budgets, tol=0.0)[1]
    S1, w1 = nnls_omp_blocks(K, budgets, tol=0.0, ridge=big)
    for blk, rows in enumerate((A[:40], A[40:])):
        on = S1[blk] >= 0
        bound = np.linalg.norm((rows @ rows.sum(0))[S1[blk][on].numpy()]) / big
        assert float(w1[blk].norm()) <= bound * (1 + 1e-9)
        assert float(w1[blk].norm()) < 0.2 * float(w0[blk].norm())
        assert (w1[blk][on] > 0).all() and not w1[blk][~on].any()


BAD_RIDGES = [-1.0, -1e-300, math.nan, math.inf, -math.inf, True, False, np.bool_(True), "1",
              None, torch.tensor(1.0)]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_RIDGES, ids=repr)
def test_invalid_ridge_is_refused(bad: object) -> None:
    kern = DenseGrads(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="ridge"):
        check_ridge(bad)
    with pytest.raises(ValueError, match="ridge"):
        nnls_omp(kern, 2, ridge=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ridge"):
        nnls_omp_blocks(torch.eye(3)[None], torch.tensor([2]), ridge=bad)  # type: ignore[arg-type]


def test_valid_ridge_values_are_accepted() -> None:
    assert check_ridge(0) == 0.0
    assert check_ridge(2) == 2.0
    assert check_ridge(np.float32(0.5)) == 0.5
    assert check_ridge(np.float64(1e300)) == 1e300
    assert isinstance(check_ridge(np.int64(3)), float)


def _assert_blocks_match_nnls_omp(
    As: Any, budgets: Any, S: Any, w: Any, ridge: float = 0.0
) -> None:
    """Each block's support and weights equal nnls_omp's (one atom at a time) on that block."""
    for b, A in enumerate(As):
        ref = nnls_omp(
            DenseGrads(torch.from_numpy(A)), int(budgets[b]), tol=0.0, block=1, ridge=ridge
        )
        on = S[b] >= 0
        got = dict(zip(S[b][on].tolist(), w[b][on].tolist(), strict=True))
        want = dict(zip(ref.positions.tolist(), ref.weights.tolist(), strict=True))
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[i] for i in want], list(want.values()), rtol=1e-7)
        assert (w[b][on] > 0).all() and not w[b][~on].any()
