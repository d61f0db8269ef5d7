"""Blocks: a group of atoms split into small blocks of atoms that lie close together.

Owns ``split`` (groups -> padded blocks of kernel positions), ``partition``, ``sketch``, the
block-matrix helpers and ``apportion`` (a budget split in proportion to sizes). The block
solvers (``craig``, GRAD-MATCH's ``nnls_omp_blocks``) need the Gram or similarity of each
block only: [nb, m, m] with m small instead of [n, n] per group, i.e. n * m instead of n^2
work and memory.

How: a cheap random sketch of the gradients (``GradKernel.sketch``, 16 coordinates) and, per
group, recursive median splits along the principal axis of the points' sketch until no block
has more than ``max_size`` points. Blocks are balanced (more than half of ``max_size`` each)
and coherent: neighbours in gradient space mostly share a block. Deterministic for a seed.

Must never: look at labels (groups come from the caller) or materialise an [n, n] matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from hpd.subset.kernels import GradKernel

Tensor = torch.Tensor
IntArray = npt.NDArray[np.int64]

SKETCH_DIM = 16  # random-projection size, used only to split groups into blocks
MAX_ENTRIES = 1 << 26  # block-matrix entries solved at once (256 MB in float32)


@dataclass(frozen=True)
class Blocks:
    """Groups split into blocks: ``pos`` [nb, m] kernel positions (each row's points first,
    then -1 padding), ``group`` [nb] the group of each block (0..G-1)."""

    pos: Tensor
    group: Tensor

    @property
    def valid(self) -> Tensor:
        return self.pos >= 0

    @property
    def sizes(self) -> Tensor:
        return self.valid.sum(1)


def apportion(k: int, counts: Sequence[int]) -> list[int]:
    """Split ``k`` over groups in proportion to ``counts`` (largest remainder, ties by order),
    never giving a group more than its count. The parts sum to ``min(k, sum(counts))``."""
    total = sum(counts)
    k = min(k, total)
    if total == 0:
        return [0] * len(counts)
    exact = [k * c / total for c in counts]
    parts = [min(c, math.floor(e)) for c, e in zip(counts, exact, strict=True)]
    order = sorted(range(len(counts)), key=lambda g: (-(exact[g] - math.floor(exact[g])), g))
    short = k - sum(parts)
    while short > 0:
        for g in order:
            if short and parts[g] < counts[g]:
                parts[g] += 1
                short -= 1
    return parts


def batches(sizes: Sequence[int], m: int, limit: int | None = None) -> list[list[int]]:
    """Consecutive groups (indices into ``sizes``) in batches whose blocks of at most m points
    take at most ``limit`` (default ``MAX_ENTRIES``) [nb, m, m] entries (about ``n * m`` for a
    group of n points); a group too large for the limit is a batch on its own."""
    limit = MAX_ENTRIES if limit is None else limit
    out: list[list[int]] = []
    used = limit
    for g, n in enumerate(sizes):
        need = n * min(m, n)
        if used + need > limit:
            out.append([])
            used = 0
        out[-1].append(g)
        used += need
    return out


def split(kernel: GradKernel, groups: Sequence[IntArray], max_size: int, seed: int) -> Blocks:
    """The groups (disjoint position arrays into ``kernel``) as blocks of at most
    ``max_size`` nearby points; a group that fits is one block."""
    dev = kernel.device
    members = torch.from_numpy(np.concatenate(groups).astype(np.int64)).to(dev)
    sizes = torch.tensor([len(g) for g in groups], device=dev)
    group = torch.repeat_interleave(torch.arange(len(groups), device=dev), sizes)
    if max(len(g) for g in groups) > max_size:
        z = sketch(kernel, SKETCH_DIM, seed)
        rows, block_group = partition(z[members], group, max_size)
    else:
        rows, block_group = block_matrix(group), torch.arange(len(groups), device=dev)
    pos = torch.where(rows >= 0, members[rows.clamp(min=0)], -1)
    return Blocks(pos, block_group)


def sketch(kernel: GradKernel, q: int, seed: int) -> Tensor:
    """A random projection of the atoms that preserves distances in expectation, [n, q]
    float32 (the kernel's own ``sketch``)."""
    gen = torch.Generator().manual_seed(seed)
    return kernel.sketch(q, gen).float()


def partition(z: Tensor, group: Tensor, max_size: int) -> tuple[Tensor, Tensor]:
    """Blocks of nearby points: each group split recursively at the median of its points'
    projection on their principal axis until no block exceeds ``max_size``.

    ``z`` [n, q]: coordinates (a sketch), ``group`` [n]: group id (0..G-1) of each point.
    Returns ``blocks`` [nb, m] (positions, -1 = padding) and each block's group [nb]. Cells
    that still split are kept as padded rows of one [cells, width] matrix, so a level is a
    few batched ops whatever the number of cells.
    """
    rows = block_matrix(group)
    cell_group = torch.arange(int(rows.shape[0]), device=z.device)
    done: list[tuple[Tensor, Tensor]] = []
    while rows.numel():
        size = (rows >= 0).sum(1)
        fin = size <= max_size
        if bool(fin.any()):
            done.append((rows[fin], cell_group[fin]))
        rows, cell_group, size = rows[~fin], cell_group[~fin], size[~fin]
        if rows.numel():
            rows = _halve(z, rows, size)
            cell_group = cell_group.repeat_interleave(2)
    width = max(int(r.shape[1]) for r, _ in done)
    pad = torch.nn.functional.pad
    blocks = torch.cat([pad(r, (0, width - r.shape[1]), value=-1) for r, _ in done])
    groups = torch.cat([g for _, g in done])
    keep = (blocks >= 0).any(1)
    blocks, groups = blocks[keep], groups[keep]
    return blocks[:, : int((blocks >= 0).sum(1).max())], groups


def _halve(z: Tensor, rows: Tensor, size: Tensor) -> Tensor:
    """Split every cell (a padded row of positions) at the median of its points' projection
    on their principal axis: [cells, s] -> [2 cells, ceil(s / 2)], left half first."""
    pad = rows < 0
    Z = rows_of(z, rows.clamp(min=0)).masked_fill_(pad[:, :, None], 0.0)
    cnt = size.to(z.dtype)[:, None]
    mean = Z.sum(1) / cnt
    cov = torch.bmm(Z.transpose(1, 2), Z) - cnt[:, :, None] * mean[:, :, None] * mean[:, None, :]
    proj = torch.bmm(Z, _principal_axis(cov))[:, :, 0].masked_fill_(pad, math.inf)
    srt = rows.gather(1, torch.sort(proj, dim=1, stable=True).indices)  # padding last
    s, half = int(rows.shape[1]), size // 2
    pos = torch.arange((s + 1) // 2, device=z.device)[None, :]
    left = srt[:, : pos.shape[1]].masked_fill(pos >= half[:, None], -1)
    at = (half[:, None] + pos).clamp(max=s - 1)
    right = srt.gather(1, at).masked_fill(half[:, None] + pos >= size[:, None], -1)
    return torch.stack([left, right], 1).reshape(2 * int(rows.shape[0]), -1)


def _principal_axis(cov: Tensor, iters: int = 16) -> Tensor:
    """Leading eigenvector of each covariance [c, q, q] as [c, q, 1], by power iteration from
    the column of largest variance (a batched eigh of many small matrices costs more; a
    rough axis splits as well)."""
    col = cov.diagonal(dim1=1, dim2=2).argmax(1)
    v = cov.gather(2, col[:, None, None].expand(-1, cov.shape[1], 1))
    for _ in range(iters):
        v = torch.bmm(cov, v)
        v = v / v.norm(dim=1, keepdim=True).clamp(min=1e-30)
    return v


def rows_of(X: Tensor, idx: Tensor) -> Tensor:
    """``X[idx]`` for an index tensor of any shape, by one ``index_select`` (several times
    faster than advanced indexing on the CPU)."""
    return X.index_select(0, idx.reshape(-1)).view(*idx.shape, *X.shape[1:])


def block_rows(sim: Tensor, blocks: Tensor, pos: Tensor) -> Tensor:
    """``sim[blocks[:, None], pos]``: rows ``pos`` [nb', t] of the blocks ``blocks`` [nb']."""
    nb, m = int(sim.shape[0]), int(sim.shape[1])
    flat = sim.view(nb * m, m)
    return rows_of(flat, blocks.reshape(-1, *([1] * (pos.ndim - 1))) * m + pos)


def block_matrix(block_id: Tensor) -> Tensor:
    """Positions of each block's points as rows of one [nb, m] matrix, -1 = padding."""
    sizes = torch.bincount(block_id)
    order = torch.argsort(block_id, stable=True)
    b = block_id[order]
    starts = torch.cumsum(sizes, 0) - sizes
    out = torch.full((int(sizes.numel()), int(sizes.max())), -1, dtype=torch.long)
    out = out.to(block_id.device)
    out[b, torch.arange(len(b), device=b.device) - starts[b]] = order
    return out
