"""Per-sample gradient sets and their inner products (the "kernel" every selector works on).

Owns: ``GradKernel`` (the interface), ``GradFeatures`` (factored last-layer gradients
``g_i = [r_i ; vec(r_i h_i^T)]`` kept as ``R`` [N, C] and ``H`` [N, D]) and ``DenseGrads``
(an explicit [N, d] matrix), plus ``as_kernel`` and ``match_error``. Besides single inner
products a kernel gives the batched forms the block solvers need: ``block_gram`` (the Gram of
many small blocks of atoms), ``project`` (correlations with many targets) and ``sketch`` (a
random projection that preserves distances in expectation).

Inner products of ``GradFeatures`` are always computed in factored form,
``<g_i, g_j> = (r_i . r_j)(b + h_i . h_j)`` with ``b = 1`` when the head has a bias, so a large
head (C * D big) never materialises an [N, C * D] matrix unless ``materialize`` is asked for.

Must never: run a model, pick samples, or move data off the device it was given on.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Tensor = torch.Tensor


def _index(idx: Any, device: torch.device) -> Tensor:
    """Index tensor (long, on ``device``) from a tensor, array, list or int."""
    if isinstance(idx, Tensor):
        return idx.to(device=device, dtype=torch.long)
    return torch.as_tensor(np.asarray(idx, dtype=np.int64), device=device)


def _weights(w: Any, n: int, like: Tensor) -> Tensor:
    if w is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    if isinstance(w, Tensor):
        return w.to(device=like.device, dtype=like.dtype)
    return torch.as_tensor(np.asarray(w), device=like.device, dtype=like.dtype)


class GradKernel(ABC):
    """A set of n gradient vectors ("atoms") of dimension ``dim`` with fast inner products."""

    @property
    @abstractmethod
    def n(self) -> int: ...

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype: ...

    @abstractmethod
    def diag(self) -> Tensor:
        """Squared norms ``||g_i||^2``, shape [n]."""

    @abstractmethod
    def columns(self, idx: Any) -> Tensor:
        """Gram columns ``K[:, idx] = <g_i, g_j>``, shape [n, len(idx)]."""

    def column(self, j: int) -> Tensor:
        """One Gram column ``K[:, j]``, shape [n]."""
        return self.columns([j])[:, 0]

    @abstractmethod
    def correlate(self, target: Tensor) -> Tensor:
        """``<g_i, target>`` for a dense target of length ``dim``, shape [n]."""

    @abstractmethod
    def weighted_sum(self, idx: Any = None, w: Any = None) -> Tensor:
        """``sum_i w_i g_{idx_i}`` as a dense vector of length ``dim`` (all atoms, weight 1, by
        default)."""

    @abstractmethod
    def subset(self, idx: Any) -> GradKernel:
        """The atoms ``idx`` (in that order) as a new kernel."""

    @abstractmethod
    def materialize(self) -> Tensor:
        """The explicit [n, dim] matrix (tests and small problems only)."""

    @abstractmethod
    def batch_sums(self, batches: Sequence[Any]) -> DenseGrads:
        """One atom per batch: the sum of the gradients of its samples."""

    def project(self, targets: Tensor) -> Tensor:
        """``<g_i, targets_q>`` for q dense targets [q, dim], shape [n, q] (a sketch of the
        atoms when the targets are random)."""
        return torch.stack([self.correlate(t) for t in targets], 1)

    def sketch(self, q: int, gen: torch.Generator) -> Tensor:
        """A random projection of the atoms, [n, q]: ``<g_i, p_j>`` for Gaussian p_j scaled so
        that squared distances are preserved in expectation (``gen`` draws on the CPU)."""
        P = torch.randn(q, self.dim, generator=gen, dtype=torch.float64) / math.sqrt(q)
        return self.project(P.to(device=self.device, dtype=self.dtype))

    def block_gram(self, blocks: Tensor) -> Tensor:
        """Gram matrices of blocks of atoms: ``blocks`` [nb, m] (long, -1 = padding) gives
        ``K[b, i, j] = <g_{blocks[b, i]}, g_{blocks[b, j]}>``, shape [nb, m, m], 0 at padding."""
        nb, m = int(blocks.shape[0]), int(blocks.shape[1])
        out = torch.zeros((nb, m, m), dtype=self.dtype, device=self.device)
        for b in range(nb):
            pos = blocks[b][blocks[b] >= 0]
            s = int(pos.numel())
            out[b, :s, :s] = self.subset(pos).columns(torch.arange(s, device=self.device))
        return out


@dataclass(frozen=True, eq=False)
class DenseGrads(GradKernel):
    """Explicit per-sample gradients ``A`` [n, d]."""

    A: Tensor

    @property
    def n(self) -> int:
        return int(self.A.shape[0])

    @property
    def dim(self) -> int:
        return int(self.A.shape[1])

    @property
    def device(self) -> torch.device:
        return self.A.device

    @property
    def dtype(self) -> torch.dtype:
        return self.A.dtype

    def diag(self) -> Tensor:
        return (self.A * self.A).sum(1)

    def columns(self, idx: Any) -> Tensor:
        return self.A @ self.A[_index(idx, self.device)].T

    def column(self, j: int) -> Tensor:
        return torch.mv(self.A, self.A[j])

    def correlate(self, target: Tensor) -> Tensor:
        return self.A @ target.to(self.dtype)

    def weighted_sum(self, idx: Any = None, w: Any = None) -> Tensor:
        A = self.A if idx is None else self.A[_index(idx, self.device)]
        return _weights(w, int(A.shape[0]), A) @ A

    def subset(self, idx: Any) -> DenseGrads:
        return DenseGrads(self.A[_index(idx, self.device)])

    def materialize(self) -> Tensor:
        return self.A

    def project(self, targets: Tensor) -> Tensor:
        return self.A @ targets.to(self.dtype).T

    def block_gram(self, blocks: Tensor) -> Tensor:
        X = _padded_rows(self.A, blocks)
        return torch.bmm(X, X.transpose(1, 2))

    def batch_sums(self, batches: Sequence[Any]) -> DenseGrads:
        if not batches:
            return DenseGrads(self.A.new_zeros((0, self.dim)))
        ids, owner = _flatten_batches(batches, self.device)
        out = self.A.new_zeros((len(batches), self.dim))
        return DenseGrads(out.index_add_(0, owner, self.A[ids]))


@dataclass(frozen=True, eq=False)
class GradFeatures(GradKernel):
    """Factored last-layer gradients: ``R = p - e_y`` [N, C], ``H`` penultimate [N, D].

    ``g_i = [r_i ; vec(r_i h_i^T)]`` (bias part first, then the row-major weight gradient; the
    bias part is absent when ``bias`` is False). ``labels`` [N] are the targets used for ``R``.
    """

    R: Tensor
    H: Tensor
    labels: Tensor | None = None
    bias: bool = True

    @property
    def n(self) -> int:
        return int(self.R.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.R.shape[1])

    @property
    def dim(self) -> int:
        C, D = int(self.R.shape[1]), int(self.H.shape[1])
        return C * (D + int(self.bias))

    @property
    def device(self) -> torch.device:
        return self.R.device

    @property
    def dtype(self) -> torch.dtype:
        return self.R.dtype

    def diag(self) -> Tensor:
        return (self.R * self.R).sum(1) * (float(self.bias) + (self.H * self.H).sum(1))

    def columns(self, idx: Any) -> Tensor:
        i = _index(idx, self.device)
        return (self.R @ self.R[i].T) * (float(self.bias) + self.H @ self.H[i].T)

    def column(self, j: int) -> Tensor:
        return torch.mv(self.H, self.H[j]).add_(float(self.bias)).mul_(torch.mv(self.R, self.R[j]))

    def _split(self, t: Tensor) -> tuple[Tensor | None, Tensor]:
        C, D = self.num_classes, int(self.H.shape[1])
        t = t.to(self.dtype)
        if self.bias:
            return t[:C], t[C:].reshape(C, D)
        return None, t.reshape(C, D)

    def correlate(self, target: Tensor) -> Tensor:
        beta, M = self._split(target)
        c = (self.R * (self.H @ M.T)).sum(1)
        return c if beta is None else c + self.R @ beta

    def weighted_sum(self, idx: Any = None, w: Any = None) -> Tensor:
        R, H = self.R, self.H
        if idx is not None:
            i = _index(idx, self.device)
            R, H = R[i], H[i]
        wr = R * _weights(w, int(R.shape[0]), R)[:, None]
        M = (wr.T @ H).reshape(-1)
        return torch.cat([wr.sum(0), M]) if self.bias else M

    def subset(self, idx: Any) -> GradFeatures:
        i = _index(idx, self.device)
        lab = None if self.labels is None else self.labels[i.to(self.labels.device)]
        return GradFeatures(self.R[i], self.H[i], lab, self.bias)

    def project(self, targets: Tensor) -> Tensor:
        """One GEMM of ``H`` against all targets' weight parts: [n, D] x [D, q * C]."""
        q, C = int(targets.shape[0]), self.num_classes
        t = targets.to(self.dtype)
        beta, M = (t[:, :C], t[:, C:]) if self.bias else (None, t)
        out = (self.H @ M.reshape(q * C, -1).T).view(self.n, q, C).mul_(self.R[:, None, :]).sum(2)
        return out if beta is None else out.add_(self.R @ beta.T)

    def sketch(self, q: int, gen: torch.Generator) -> Tensor:
        """A Kronecker-structured random projection, [n, q] (q even): ``g = r (x) [1; h]``
        (up to the order of coordinates), so with ``P = P_r (x) P_h`` the sketch is
        ``(P_r r) (x) (P_h [1; h])``: O(n D q) instead of O(n C D q). Two rows for ``r`` are
        enough, as within a class r is nearly one direction (Fashion-MNIST, blocks for CRAIG:
        matching error 0.042-0.046 with 2 x 8, 0.041 with 2 x 16, 0.044 with a dense Gaussian
        sketch of 16, 0.049 with 4 x 4)."""
        qr, qh = 2, max(1, q // 2)
        C, D = self.num_classes, int(self.H.shape[1])
        Pr = torch.randn(qr, C, generator=gen, dtype=torch.float64) / math.sqrt(qr)
        Ph = torch.randn(qh, D + 1, generator=gen, dtype=torch.float64) / math.sqrt(qh)
        Pr, Ph = Pr.to(self.device, self.dtype), Ph.to(self.device, self.dtype)
        zh = self.H @ Ph[:, 1:].T
        if self.bias:
            zh += Ph[:, 0]
        return ((self.R @ Pr.T)[:, :, None] * zh[:, None, :]).reshape(self.n, qr * qh)

    def block_gram(self, blocks: Tensor) -> Tensor:
        """``(R_b R_b^T) * (b + H_b H_b^T)`` per block: two batched GEMMs."""
        R, H = _padded_rows(self.R, blocks), _padded_rows(self.H, blocks)
        if self.device.type != "cpu":
            K = torch.bmm(H, H.transpose(1, 2)).add_(float(self.bias))
            return K.mul_(torch.bmm(R, R.transpose(1, 2)))
        # On the CPU a loop of GEMMs beats bmm for these shapes, most of all for the thin
        # R R^T (C = 10: bmm 43 ms, loop 15 ms for 320 blocks of 188).
        K = H.new_empty((int(blocks.shape[0]), int(blocks.shape[1]), int(blocks.shape[1])))
        for b in range(int(blocks.shape[0])):
            torch.mm(H[b], H[b].T, out=K[b])
            K[b].add_(float(self.bias)).mul_(R[b] @ R[b].T)
        return K

    def materialize(self) -> Tensor:
        n = self.n
        W = (self.R[:, :, None] * self.H[:, None, :]).reshape(n, -1)
        return torch.cat([self.R, W], 1) if self.bias else W

    def batch_sums(self, batches: Sequence[Any]) -> DenseGrads:
        """Batch atoms ``[sum r ; vec(sum r h^T)]``: the batches padded into one index matrix,
        then one batched GEMM (no [n, C, D] tensor, no Python loop over batches)."""
        if not batches:
            return DenseGrads(self.R.new_zeros((0, self.dim)))
        blocks = _pad_batches(batches, self.device)
        R, H = _padded_rows(self.R, blocks), _padded_rows(self.H, blocks)
        W = torch.bmm(R.transpose(1, 2), H).reshape(len(batches), -1)
        return DenseGrads(torch.cat([R.sum(1), W], 1) if self.bias else W)


def _padded_rows(X: Tensor, blocks: Tensor) -> Tensor:
    """``X[blocks]`` [nb, m, ...] with zero rows where ``blocks`` is -1 (padding)."""
    valid = blocks >= 0
    rows = X.index_select(0, blocks.clamp(min=0).reshape(-1)).view(*blocks.shape, *X.shape[1:])
    return rows.mul_(valid.reshape(*valid.shape, *([1] * (X.ndim - 1))).to(X.dtype))


def _pad_batches(batches: Sequence[Any], device: torch.device) -> Tensor:
    """The batches as rows of one [len(batches), longest] index matrix, -1 = padding."""
    ids, owner = _flatten_batches(batches, device)
    sizes = torch.bincount(owner, minlength=len(batches))
    starts = torch.cumsum(sizes, 0) - sizes
    out = torch.full((len(batches), int(sizes.max())), -1, dtype=torch.long, device=device)
    out[owner, torch.arange(len(ids), device=device) - starts[owner]] = ids
    return out


def _flatten_batches(batches: Sequence[Any], device: torch.device) -> tuple[Tensor, Tensor]:
    """Concatenated sample ids and, for each, the position of its batch."""
    parts = [_index(b, device).reshape(-1) for b in batches]
    ids = torch.cat(parts)
    sizes = torch.tensor([len(p) for p in parts], device=device)
    owner = torch.repeat_interleave(torch.arange(len(parts), device=device), sizes)
    return ids, owner


def as_kernel(grads: Any) -> GradKernel:
    """Wrap ``grads`` (a kernel, a torch tensor on any device, or a numpy array) [n, d]."""
    if isinstance(grads, GradKernel):
        return grads
    t = grads if isinstance(grads, Tensor) else torch.as_tensor(np.asarray(grads))
    t = t.detach()
    if t.ndim != 2:
        raise ValueError(f"grads must be 2-D [n, d], got shape {tuple(t.shape)}")
    if t.dtype != torch.float64:
        t = t.to(torch.float32)
    return DenseGrads(t)


def match_error(grads: Any, indices: Any, weights: Any) -> float:
    """Relative gradient-matching error ``||sum_i w_i g_{idx_i} - sum_j g_j|| / ||sum_j g_j||``."""
    k = as_kernel(grads)
    full = k.weighted_sum().double()
    approx = k.weighted_sum(indices, weights).double() if len(indices) else torch.zeros_like(full)
    denom = float(full.norm())
    return float((approx - full).norm()) / denom if denom > 0 else float(approx.norm())
