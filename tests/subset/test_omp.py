"""OMP-NNLS (GRAD-MATCH's solver) against scipy's NNLS and the other oracles of §4.6."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
scipy_optimize = pytest.importorskip("scipy.optimize")

from hpd.subset import DenseGrads, match_error  # noqa: E402
from hpd.subset.omp import _State, nnls_omp, nnls_omp_blocks  # noqa: E402


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
    for b, A in enumerate(As):
        ref = nnls_omp(DenseGrads(torch.from_numpy(A)), int(budgets[b]), tol=0.0, block=1)
        on = S[b] >= 0
        got = dict(zip(S[b][on].tolist(), w[b][on].tolist(), strict=True))
        want = dict(zip(ref.positions.tolist(), ref.weights.tolist(), strict=True))
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[i] for i in want], list(want.values()), rtol=1e-7)
        assert (w[b][on] > 0).all() and not w[b][~on].any()
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
