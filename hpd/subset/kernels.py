"""Per-sample gradient sets and their inner products (the "kernel" every selector works on).

Owns: ``GradKernel`` (the interface), ``GradFeatures`` (factored last-layer gradients
``g_i = [r_i ; vec(r_i h_i^T)]`` kept as ``R`` [N, C] and ``H`` [N, D]) and ``DenseGrads``
(an explicit [N, d] matrix), plus ``as_kernel`` and ``match_error``.

Inner products of ``GradFeatures`` are always computed in factored form,
``<g_i, g_j> = (r_i . r_j)(b + h_i . h_j)`` with ``b = 1`` when the head has a bias, so a large
head (C * D big) never materialises an [N, C * D] matrix unless ``materialize`` is asked for.

Must never: run a model, pick samples, or move data off the device it was given on.
"""

from __future__ import annotations

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

    def materialize(self) -> Tensor:
        n = self.n
        W = (self.R[:, :, None] * self.H[:, None, :]).reshape(n, -1)
        return torch.cat([self.R, W], 1) if self.bias else W

    def batch_sums(self, batches: Sequence[Any]) -> DenseGrads:
        """Batch atoms ``[sum r ; vec(sum r h^T)]``: one small GEMM per batch, no [n, C, D]."""
        out = self.R.new_zeros((len(batches), self.dim))
        off = self.num_classes if self.bias else 0
        for b, idx in enumerate(batches):
            i = _index(idx, self.device).reshape(-1)
            R, H = self.R[i], self.H[i]
            out[b, off:] = (R.T @ H).reshape(-1)
            if self.bias:
                out[b, :off] = R.sum(0)
        return DenseGrads(out)


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
