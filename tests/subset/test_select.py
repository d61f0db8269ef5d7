"""select / select_batches: budgets, determinism, and matching quality on realistic gradients."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hpd.subset import apportion, budget, match_error, select, select_batches  # noqa: E402
from hpd.subset.kernels import DenseGrads  # noqa: E402
from hpd.subset.omp import nnls_omp  # noqa: E402

STRATEGIES = ("random", "gradmatch", "craig")


def test_budget_and_apportion() -> None:
    assert budget(0.1, 20000) == 2000  # no float fuzz: 0.1 * 20000 is not 2000.0000000001
    assert budget(0.125, 60000) == 7500
    assert budget(1e-9, 10) == 1
    assert budget(1.0, 7) == 7
    with pytest.raises(ValueError, match="fraction"):
        budget(0.0, 10)
    parts = apportion(10, [50, 30, 20, 0])
    assert parts == [5, 3, 2, 0]
    assert sum(apportion(7, [3, 3, 3])) == 7
    assert apportion(100, [2, 5]) == [2, 5]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_size_uniqueness_and_determinism(strategy: str, softmax_features) -> None:
    F, labels = softmax_features, softmax_features.labels
    idx, w = select(strategy, F, 0.1, labels=labels, seed=3)
    assert len(idx) == budget(0.1, F.n) == len(w)
    assert len(np.unique(idx)) == len(idx)
    assert (np.diff(idx) > 0).all()
    assert (w > 0).all()
    idx2, w2 = select(strategy, F, 0.1, labels=labels, seed=3)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_array_equal(w, w2)
    # per class: each class gets its proportional share
    counts = np.bincount(labels.numpy()[idx], minlength=6)
    assert counts.tolist() == apportion(len(idx), np.bincount(labels.numpy()).tolist())


def test_random_is_stratified_unbiased_and_seeded() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    idx, w = select("random", 100, 0.2, labels=labels, seed=1)
    assert np.bincount(labels[idx]).tolist() == [10, 6, 4]
    assert w.sum() == pytest.approx(100.0)
    assert not np.array_equal(idx, select("random", 100, 0.2, labels=labels, seed=2)[0])


def test_numpy_and_torch_inputs_agree(softmax_features) -> None:
    A = softmax_features.materialize().double()
    a, wa = select("gradmatch", A, 0.05, labels=softmax_features.labels)
    b, wb = select("gradmatch", A.numpy(), 0.05, labels=softmax_features.labels.numpy())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(wa, wb)


def test_errors_fall_as_the_fraction_grows(softmax_features) -> None:
    """Oracle 7: both stratified random's (mean of draws) and GRAD-MATCH's errors fall."""
    F = softmax_features
    rnd, gm = [], []
    for frac in (0.02, 0.05, 0.1, 0.2):
        draws = [
            match_error(F, *select("random", F, frac, labels=F.labels, seed=s)) for s in range(8)
        ]
        rnd.append(float(np.mean(draws)))
        gm.append(match_error(F, *select("gradmatch", F, frac, labels=F.labels)))
    assert all(b < a for a, b in itertools.pairwise(rnd))
    assert all(b < a for a, b in itertools.pairwise(gm))
    assert all(g < r for g, r in zip(gm, rnd, strict=True))


@pytest.mark.parametrize("frac", [0.05, 0.1])
def test_gradient_strategies_beat_random(frac: float, softmax_features) -> None:
    """On softmax-regression gradients, weighted GRAD-MATCH and CRAIG subsets match the full
    gradient far better than stratified random subsets of the same size."""
    F = softmax_features
    rnd = np.mean(
        [match_error(F, *select("random", F, frac, labels=F.labels, seed=s)) for s in range(8)]
    )
    gm = match_error(F, *select("gradmatch", F, frac, labels=F.labels))
    cr = match_error(F, *select("craig", F, frac, labels=F.labels))
    assert gm < 0.5 * rnd
    assert cr < 0.6 * rnd


def test_reported_residual_equals_recomputed_error(softmax_features) -> None:
    """Oracle 9: the error recomputed from the returned indices and weights alone equals the
    solver's residual (no index is attached to the wrong sample)."""
    F = softmax_features
    perm = torch.from_numpy(np.random.default_rng(0).permutation(F.n))
    shuffled = F.subset(perm)
    res = nnls_omp(shuffled, 40, tol=0.0)
    idx, w = select("gradmatch", shuffled, 40 / F.n, tol=0.0)
    assert match_error(shuffled, idx, w) == pytest.approx(res.residual, rel=1e-4)
    global_idx = perm.numpy()[idx]  # back to the unshuffled rows
    assert match_error(F, global_idx, w) == pytest.approx(res.residual, rel=1e-4)


def test_per_batch_selection_returns_batch_positions(softmax_features) -> None:
    F = softmax_features
    perm = np.random.default_rng(0).permutation(F.n)
    batches = [perm[i : i + 20] for i in range(0, F.n, 20)]
    atoms = F.batch_sums(batches)
    rnd = np.mean(
        [match_error(atoms, *select_batches("random", F, batches, 0.1, seed=s)) for s in range(8)]
    )
    pos, w = select_batches("gradmatch", F, batches, 0.1)
    assert len(pos) == budget(0.1, len(batches))
    assert len(np.unique(pos)) == len(pos)
    assert match_error(atoms, pos, w) < 0.6 * rnd
    # the same, expressed per sample: every sample of a chosen batch carries its batch's weight
    samples = np.concatenate([batches[p] for p in pos])
    sample_w = np.concatenate([np.full(len(batches[p]), wp) for p, wp in zip(pos, w, strict=True)])
    assert match_error(F, samples, sample_w) == pytest.approx(match_error(atoms, pos, w), rel=1e-5)
    with pytest.raises(ValueError, match="unknown strategy"):
        select_batches("glister", F, batches, 0.1)


def test_gradmatch_fills_a_short_support_to_the_budget() -> None:
    """In 4 dimensions the NNLS optimum needs at most 4 atoms: the rest of k = 40 is random
    fill; fill_weight trades the match (0: exactly OMP's) for the fill's share (1: uniform)."""
    rng = np.random.default_rng(10)
    A = np.abs(rng.standard_normal((200, 4))) + 0.1
    res = nnls_omp(DenseGrads(torch.from_numpy(A)), 40, tol=0.0)
    assert len(res.positions) <= 4
    for fw in (0.0, 0.5, 1.0):
        idx, w = select("gradmatch", A, 0.2, seed=1, tol=0.0, fill_weight=fw)
        assert len(idx) == 40 == len(np.unique(idx))
        chosen = np.isin(idx, res.positions.numpy())
        np.testing.assert_allclose(w[~chosen], fw * 200 / 40)
        err = match_error(A, idx, w)
        if fw == 0.0:
            assert err == pytest.approx(res.residual, abs=1e-9)
        assert err < 0.2
    with pytest.raises(ValueError, match="fill_weight"):
        select("gradmatch", A, 0.2, fill_weight=2.0)


def test_blocked_gradmatch_per_class(softmax_features) -> None:
    """Large groups (here: 300-sample classes with max_block 64) are matched block by block:
    exact per-class budgets, positive weights, determinism, a match far better than
    stratified random's, and indices that refer to the rows (index-mapping guard, oracle 9)."""
    F, labels = softmax_features, softmax_features.labels.numpy()
    frac = 0.2  # 60 per class: 2 blocks of 150 (blocks hold at least 32 atoms of budget)
    idx, w = select("gradmatch", F, frac, labels=F.labels, seed=2, max_block=64)
    assert len(idx) == budget(frac, F.n) == len(np.unique(idx))
    counts = np.bincount(labels[idx], minlength=6)
    assert counts.tolist() == apportion(len(idx), np.bincount(labels).tolist())
    assert (w > 0).all()
    again = select("gradmatch", F, frac, labels=F.labels, seed=2, max_block=64)
    np.testing.assert_array_equal(idx, again[0])
    np.testing.assert_array_equal(w, again[1])
    rnd = np.mean(
        [match_error(F, *select("random", F, frac, labels=F.labels, seed=s)) for s in range(8)]
    )
    err = match_error(F, idx, w)
    assert err < 0.5 * rnd
    perm = torch.from_numpy(np.random.default_rng(1).permutation(F.n))
    shuffled = F.subset(perm)
    sidx, sw = select("gradmatch", shuffled, frac, labels=shuffled.labels, max_block=64)
    assert match_error(F, perm.numpy()[sidx], sw) == pytest.approx(
        match_error(shuffled, sidx, sw), rel=1e-5
    )


def test_blocked_gradmatch_fills_short_blocks() -> None:
    """In 4 dimensions a block's match needs at most 4 atoms: the rest of the budget is random
    fill of the group, as for whole groups."""
    rng = np.random.default_rng(13)
    A = np.abs(rng.standard_normal((1200, 4))) + 0.1
    idx, w = select("gradmatch", A, 0.25, seed=3, tol=0.0, fill_weight=1.0, max_block=64)
    assert len(idx) == 300 == len(np.unique(idx))
    fill = np.isclose(w, 1200 / 300)
    assert 0 < fill.sum() < 300
    assert match_error(A, idx, w) < 0.2


# -- ridge (GRAD-MATCH's regularisation) -------------------------------------------------------

# path -> (the solver it must call, its fraction, max_block); 6 classes of 300 samples
RIDGE_PATHS = {
    "blocked classes": ("nnls_omp_blocks", 0.2, 64),  # 60 per class: blocks of 160
    "whole classes": ("nnls_omp", 0.05, 1800),  # blocks larger than a class
    "per batch": ("nnls_omp", 0.1, 0),  # 90 batches of 20, whole-set OMP
}


def _batches(n: int) -> list[np.ndarray]:
    perm = np.random.default_rng(0).permutation(n)
    return [perm[i : i + 20] for i in range(0, n, 20)]


def _gradmatch(F: Any, path: str, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """GRAD-MATCH on ``path``: ``select`` per class or ``select_batches`` (batches of 20)."""
    _, frac, max_block = RIDGE_PATHS[path]
    if path == "per batch":
        return select_batches("gradmatch", F, _batches(F.n), frac, seed=4, **kw)
    return select("gradmatch", F, frac, labels=F.labels, seed=4, max_block=max_block, **kw)


@pytest.mark.parametrize("path", RIDGE_PATHS)
def test_ridge_zero_keeps_the_selection(path: str, softmax_features, solver_calls) -> None:
    """``ridge=0`` gives exactly the unridged selection and weights on every GRAD-MATCH path."""
    idx, w = _gradmatch(softmax_features, path, ridge=0.0)
    plain_idx, plain_w = _gradmatch(softmax_features, path)
    np.testing.assert_array_equal(idx, plain_idx)
    np.testing.assert_array_equal(w, plain_w)
    assert {name for name, _ in solver_calls} == {RIDGE_PATHS[path][0]}
    assert {r for _, r in solver_calls} == {0.0}


@pytest.mark.parametrize("path", RIDGE_PATHS)
def test_large_ridge_shrinks_gradmatch_weights(path: str, softmax_features, solver_calls) -> None:
    """A ridge reaches the path's solver and shrinks the chosen weights (no fill weights here:
    ``fill_weight=0``), which stay >= 0; the match gets worse for it, the budget is kept."""
    F = softmax_features
    mean_g2 = float(F.materialize().double().square().sum(1).mean())
    # per batch, the atoms are sums of 20 gradients: a Gram about 20-400 times larger
    big = (4000.0 if path == "per batch" else 10.0) * mean_g2
    i0, w0 = _gradmatch(F, path, fill_weight=0.0)
    solver_calls.clear()
    i1, w1 = _gradmatch(F, path, fill_weight=0.0, ridge=big)
    assert {name for name, _ in solver_calls} == {RIDGE_PATHS[path][0]}
    assert {r for _, r in solver_calls} == {big}
    assert len(i1) == len(i0) == len(np.unique(i1))
    assert (w1 >= 0).all() and (w1 > 0).any()
    assert np.linalg.norm(w1) < 0.5 * np.linalg.norm(w0)
    atoms = F.batch_sums(_batches(F.n)) if path == "per batch" else F
    assert match_error(atoms, i1, w1) > match_error(atoms, i0, w0)
    again = _gradmatch(F, path, fill_weight=0.0, ridge=big)
    np.testing.assert_array_equal(again[0], i1)
    np.testing.assert_array_equal(again[1], w1)


@pytest.mark.parametrize("strategy", ["random", "craig"])
def test_nonzero_ridge_is_gradmatch_only(strategy: str, softmax_features) -> None:
    F = softmax_features
    batches = [np.arange(i, i + 20) for i in range(0, F.n, 20)]
    with pytest.raises(ValueError, match=f"ridge.*{strategy!r}"):
        select(strategy, F, 0.1, labels=F.labels, ridge=1.0)
    with pytest.raises(ValueError, match=f"ridge.*{strategy!r}"):
        select_batches(strategy, F, batches, 0.1, ridge=1.0)
    a = select(strategy, F, 0.1, labels=F.labels, ridge=0.0)
    b = select(strategy, F, 0.1, labels=F.labels)
    np.testing.assert_array_equal(a[0], b[0])
    assert len(select_batches(strategy, F, batches, 0.1, ridge=0)[0]) == budget(0.1, len(batches))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, np.bool_(False), "0"])
@pytest.mark.parametrize("strategy", ["gradmatch", "random", "craig"])
def test_invalid_ridge_is_refused_by_select(bad: object, strategy: str, softmax_features) -> None:
    F = softmax_features
    with pytest.raises(ValueError, match="ridge must be"):
        select(strategy, F, 0.1, labels=F.labels, ridge=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ridge must be"):
        select_batches(strategy, F, [np.arange(10)], 0.5, ridge=bad)  # type: ignore[arg-type]
