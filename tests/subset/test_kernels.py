"""Factored gradient kernels agree with the materialised gradients (oracle 2 of §4.6)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hpd.subset import DenseGrads, GradFeatures, match_error  # noqa: E402
from hpd.subset.kernels import as_kernel  # noqa: E402


def _features(bias: bool, dtype: torch.dtype = torch.float64) -> GradFeatures:
    g = torch.Generator().manual_seed(1)
    n, C, D = 40, 5, 7
    R = torch.softmax(torch.randn(n, C, generator=g, dtype=dtype), 1)
    y = torch.randint(0, C, (n,), generator=g)
    R[torch.arange(n), y] -= 1
    H = torch.randn(n, D, generator=g, dtype=dtype)
    return GradFeatures(R, H, y, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
def test_factored_products_match_materialised(bias: bool) -> None:
    F = _features(bias)
    A = F.materialize()
    assert A.shape == (F.n, F.dim)
    dense = DenseGrads(A)
    idx = [3, 0, 17]
    torch.testing.assert_close(F.columns(idx), A @ A[idx].T)
    torch.testing.assert_close(F.column(5), A @ A[5])
    torch.testing.assert_close(F.diag(), (A * A).sum(1))
    t = torch.randn(F.dim, dtype=torch.float64)
    torch.testing.assert_close(F.correlate(t), A @ t)
    w = torch.rand(3, dtype=torch.float64)
    torch.testing.assert_close(F.weighted_sum(idx, w), w @ A[idx])
    torch.testing.assert_close(F.weighted_sum(), A.sum(0))
    batches = [np.array([0, 1, 2]), np.array([5, 9]), np.arange(10, 40)]
    torch.testing.assert_close(F.batch_sums(batches).A, dense.batch_sums(batches).A)
    torch.testing.assert_close(F.subset(idx).materialize(), A[idx])


def test_factored_float32_within_1e6_relative() -> None:
    F = _features(True, torch.float32)
    A = F.materialize().double()
    K = F.columns(list(range(F.n))).double()
    rel = float((K - A @ A.T).abs().max() / (A @ A.T).abs().max())
    assert rel < 1e-6


def test_as_kernel_accepts_numpy_and_tensors() -> None:
    a = np.random.default_rng(0).standard_normal((6, 4))
    k_np, k_t = as_kernel(a), as_kernel(torch.from_numpy(a))
    assert k_np.dtype == torch.float64
    torch.testing.assert_close(k_np.columns([1, 2]), k_t.columns([1, 2]))
    assert as_kernel(torch.ones(3, 2, dtype=torch.float16)).dtype == torch.float32
    with pytest.raises(ValueError, match="2-D"):
        as_kernel(np.zeros(3))


def test_match_error_is_relative_gradient_error() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert match_error(a, [2], [2.0]) == pytest.approx(0.0)
    assert match_error(a, [0], [2.0]) == pytest.approx(
        np.linalg.norm([0, 2]) / np.linalg.norm([2, 2])
    )
    assert match_error(a, [], []) == pytest.approx(1.0)


@pytest.mark.parametrize("bias", [True, False])
def test_block_gram_project_and_sketch_match_materialised(bias: bool) -> None:
    """The batched helpers CRAIG uses agree with the explicit gradients (padding gives 0)."""
    F = _features(bias)
    A = F.materialize()
    blocks = torch.tensor([[3, 0, 17, -1], [5, 6, 7, 8], [9, -1, -1, -1]])
    for kern in (F, DenseGrads(A)):
        K = kern.block_gram(blocks)
        for b, row in enumerate(blocks):
            idx = row[row >= 0]
            s = len(idx)
            torch.testing.assert_close(K[b, :s, :s], A[idx] @ A[idx].T)
            assert not K[b, s:].any() and not K[b, :, s:].any()
        T = torch.randn(4, F.dim, dtype=torch.float64)
        torch.testing.assert_close(kern.project(T), A @ T.T)
    # GradFeatures' sketch is the projection on a Kronecker product of Gaussian matrices
    C, D = F.num_classes, int(F.H.shape[1])
    z = F.sketch(8, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    Pr = torch.randn(2, C, generator=gen, dtype=torch.float64) / 2**0.5
    Ph = torch.randn(4, D + 1, generator=gen, dtype=torch.float64) / 2.0
    P = torch.einsum("ac,bd->abcd", Pr, Ph).reshape(8, C, D + 1)
    P = torch.cat([P[:, :, 0], P[:, :, 1:].reshape(8, -1)], 1) if bias else P[:, :, 1:]
    torch.testing.assert_close(z, A @ P.reshape(8, -1).T)
