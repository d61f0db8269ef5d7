"""CRAIG's solver: greedy facility location on gradient distances, in coherent blocks.

Owns ``craig`` (several groups, e.g. the classes, at once) and ``facility_location`` (one
group). Per group: ``D_ij = ||g_i - g_j||`` (from the Gram, ``sqrt(max(K_ii + K_jj - 2 K_ij,
0))``), similarities ``s_ij = max D - D_ij``, and greedy maximisation of
``F(S) = sum_i max_{j in S} s_ij``. Weights ``gamma_j`` = number of points whose most similar
chosen point is j (each chosen point counts itself, so ``gamma_j >= 1``; they sum to the
group's size).

Why blocks: the dense [n, n] similarity of one 6,000-sample class costs 10 GFLOP to build,
and lazy greedy then re-reads about 40 of its rows per pick (Fashion-MNIST, 12.5%: 14.6 s per
selection on 2 CPU cores, more than an epoch of training). So a group of more than
``max_block`` points is split into blocks of at most ``max_block`` points that lie close
together in gradient space (recursive median splits along the principal axis of a random
sketch of the gradients), and ``s`` is kept within blocks only (block-diagonal). That problem
is solved *exactly* greedily: every block first gets its best medoid (greedy's own first pick
there), then the group's remaining budget goes to the largest marginal gains over all its
blocks, i.e. the blocks' greedy sequences merged by gain, which is what greedy on the whole
block-diagonal problem picks. Blocks get as many points as their spread calls for (a tight
block may keep one medoid; a block of outliers may keep most of them). A group of at most
``max_block`` points is one block: plain greedy facility location.

All blocks of all groups advance in lockstep, one pick per block per step (Python steps = the
most picks any block gets, not the total). Gains are evaluated lazily in batches and exactly: a
block's pick is taken only when its best fresh gain beats every stale bound of that block. A
block stops once its gain falls below its group's current k-th best recorded gain (its later
gains can only be smaller). Memory: one [nb, m, m] similarity, about ``n * max_block``
floats (groups are solved in batches of at most ``blocks.MAX_ENTRIES`` entries).

Must never: look at labels or samples (groups come from ``select``), or rely on a group fitting
in one [n, n] matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from hpd.subset.blocks import batches, block_rows, split
from hpd.subset.kernels import GradKernel
from hpd.subset.omp import single_thread_on_cpu

Tensor = torch.Tensor
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_FIRST_EVALS = 8  # candidates evaluated per block per lazy round (doubling while not exact)
_THRESHOLD_EVERY = 4  # steps between updates of the groups' pruning thresholds


def block_similarity(kernel: GradKernel, blocks: Tensor, chunk: int = 32) -> Tensor:
    """``s_ij = max D - D_ij`` within each block, [nb, m, m] (0 at padding).

    ``blocks`` [nb, m]: positions, each row's padding (-1) after its points. Built a few blocks
    at a time, each chunk's Gram turned into similarities while it is still in cache (the
    elementwise passes over one [nb, m, m] tensor would otherwise cost as much as the GEMMs).
    """
    nb, m = int(blocks.shape[0]), int(blocks.shape[1])
    out = torch.empty((nb, m, m), dtype=kernel.dtype, device=kernel.device)
    for s in range(0, nb, chunk):
        part = blocks[s : s + chunk]
        out[s : s + chunk] = _similarity(kernel.block_gram(part), (part >= 0).sum(1))
    return out


def _similarity(K: Tensor, sizes: Tensor) -> Tensor:
    """Gram [nb, m, m] -> similarities, in place."""
    sq = K.diagonal(dim1=1, dim2=2).clone()
    D = K.mul_(-2).add_(sq[:, :, None]).add_(sq[:, None, :]).clamp_(min=0).sqrt_()
    D.diagonal(dim1=1, dim2=2).zero_()
    _zero_padding(D, sizes)
    top = D.amax((1, 2), keepdim=True) if D.numel() else D.new_zeros((0, 1, 1))
    return _zero_padding(D.neg_().add_(top), sizes)


def _zero_padding(T: Tensor, sizes: Tensor) -> Tensor:
    """Zero the padding rows and columns of [nb, m, m] blocks, one slice per distinct block
    size (blocks come in a few sizes; a [nb, m, m] mask would cost more than the slices)."""
    m = int(T.shape[1])
    for s in torch.unique(sizes).tolist():
        if s < m:
            sel = torch.nonzero(sizes == s)[:, 0]
            T[sel, s:, :] = 0
            T[sel, :, s:] = 0
    return T


def similarity(kernel: GradKernel) -> Tensor:
    """The dense [n, n] similarity of all atoms (one block; small problems and tests)."""
    blocks = torch.arange(kernel.n, device=kernel.device)[None]
    return block_similarity(kernel, blocks)[0]


def objective(sim: Tensor | npt.NDArray[np.floating], chosen: list[int]) -> float:
    """``F(S) = sum_i max_{j in S} s_ij`` (0 for the empty set)."""
    if not chosen:
        return 0.0
    s = torch.as_tensor(sim)
    return float(s[:, chosen].max(1).values.sum(dtype=torch.float64))


def _gains(rows: Tensor, cur: Tensor) -> Tensor:
    """``sum_i relu(s_ij - cur_i)`` for candidate rows [nb, t, m] (s is symmetric) against the
    blocks' current coverage [nb, m]; summed as non-negative terms, so small gains keep their
    precision."""
    return rows.sub_(cur[:, None, :]).clamp_min_(0).sum(2)


def _best(sim: Tensor, cur: Tensor, bound: Tensor, blocks: Tensor) -> tuple[Tensor, Tensor]:
    """Exact best marginal gain (and its candidate) of each of ``blocks``, by lazy evaluation:
    evaluate the largest stale bounds, t at a time, until the best fresh gain beats the largest
    bound left unevaluated (bounds stay valid upper bounds: gains only shrink). Ties go to
    the lowest position."""
    m = int(sim.shape[1])
    best_g = cur.new_full((len(blocks),), -math.inf)
    best_j = torch.zeros(len(blocks), dtype=torch.long, device=cur.device)
    todo = torch.arange(len(blocks), device=cur.device)
    t = _FIRST_EVALS
    flat = bound.view(-1)
    while todo.numel():
        b, t = blocks[todo], min(t, m)
        vals, cand = bound.index_select(0, b).topk(min(t + 1, m), dim=1)
        rest = vals[:, t] if t < m else vals.new_full((len(b),), -math.inf)
        cand, vals = cand[:, :t], vals[:, :t]
        g = _gains(block_rows(sim, b, cand), cur.index_select(0, b))
        g.masked_fill_(vals == -math.inf, -math.inf)
        flat.index_copy_(0, (b[:, None] * m + cand).reshape(-1), g.reshape(-1))
        gb = g.max(1).values
        # ties (common: two points that cover each other gain the same) go to the lowest
        # position, as in naive greedy; so a tie with an unevaluated bound is not yet decided
        best_j[todo] = torch.where(g == gb[:, None], cand, m).min(1).values
        best_g[todo] = gb
        todo, t = todo[(gb <= rest) & (rest > -math.inf)], 2 * t
    return best_j, best_g


@dataclass
class _Picks:
    """Recorded greedy picks after the first one per block: block, position, (monotone) gain."""

    block: list[Tensor]
    pos: list[Tensor]
    gain: list[Tensor]

    def top(self, block_group: Tensor, left: Tensor) -> tuple[Tensor, Tensor]:
        """The ``left[g]`` largest gains of each group g (ties: earlier picks first), as
        (blocks, positions)."""
        if not self.block:
            empty = torch.zeros(0, dtype=torch.long, device=left.device)
            return empty, empty
        b, j, g = torch.cat(self.block), torch.cat(self.pos), torch.cat(self.gain)
        grp = block_group[b]
        order = torch.argsort(-g, stable=True)
        order = order[torch.argsort(grp[order], stable=True)]
        sizes = torch.bincount(grp, minlength=len(left))
        starts = torch.cumsum(sizes, 0) - sizes
        gs = grp[order]
        keep = order[torch.arange(len(order), device=g.device) - starts[gs] < left[gs]]
        return b[keep], j[keep]


class _Thresholds:
    """Each group's current ``left[g]``-th best recorded gain. A block whose gain falls below its
    group's threshold can stop: its later gains are smaller still, and the threshold only rises
    as gains are recorded. Updated every few steps (pruning may lag; it only saves work)."""

    def __init__(self, block_group: Tensor, left: Tensor, like: Tensor) -> None:
        G = int(left.numel())
        counts = torch.bincount(block_group, minlength=G)
        self.block_group, self.left = block_group, left
        # each block's rank among its group's blocks; blocks need not be sorted by group
        # (``partition`` lists a group that splits one level deeper after the others)
        order = torch.argsort(block_group, stable=True)
        rank = torch.arange(len(block_group), device=like.device)
        self.slot = torch.empty_like(rank)
        self.slot[order] = rank - (torch.cumsum(counts, 0) - counts)[block_group[order]]
        self.width = int(counts.max())
        self.best = like.new_full((G, int(left.max().clamp(min=0))), -math.inf)
        self.tau = like.new_full((G,), -math.inf)
        self.pending: list[Tensor] = []

    def record(self, blocks: Tensor, gains: Tensor) -> None:
        new = self.best.new_full((len(self.left), self.width), -math.inf)
        new[self.block_group[blocks], self.slot[blocks]] = gains
        self.pending.append(new)
        if len(self.pending) == _THRESHOLD_EVERY:
            merged = torch.cat([self.best, *self.pending], 1)
            self.best = merged.topk(self.best.shape[1], dim=1).values
            self.pending = []
            if self.best.shape[1]:
                tau = self.best.gather(1, (self.left - 1).clamp(min=0)[:, None])[:, 0]
                self.tau = tau.masked_fill(self.left <= 0, math.inf)

    def alive(self, blocks: Tensor, gains: Tensor) -> Tensor:
        return gains >= self.tau[self.block_group[blocks]]


def _first_picks(sim: Tensor, valid: Tensor, chunk: int = 32) -> tuple[Tensor, Tensor, Tensor]:
    """Each block's greedy first pick (largest row sum): chosen mask, coverage ``cur`` [nb, m]
    and the exact gains ``sum_i relu(s_ij - cur_i)`` of all other candidates (the lazy bounds
    to start from). A few blocks at a time, so the passes over a chunk stay in cache."""
    nb, m = int(valid.shape[0]), int(valid.shape[1])
    chosen = torch.zeros((nb, m), dtype=torch.bool, device=sim.device)
    cur = sim.new_empty((nb, m))
    bound = sim.new_empty((nb, m))
    buf = sim.new_empty((min(chunk, nb), m, m))
    for s in range(0, nb, chunk):
        part, ok = sim[s : s + chunk], valid[s : s + chunk]
        first = part.sum(2).masked_fill_(~ok, -1.0).argmax(1)
        chosen[s : s + chunk].scatter_(1, first[:, None], True)
        c = cur[s : s + chunk]
        c.copy_(part.gather(1, first[:, None, None].expand(-1, 1, m))[:, 0])
        diff = torch.sub(part, c[:, None, :], out=buf[: len(part)])
        bound[s : s + chunk] = diff.clamp_min_(0).sum(2)
    return chosen, cur, bound.masked_fill_(~valid | chosen, -math.inf)


def greedy(sim: Tensor, valid: Tensor, block_group: Tensor, budgets: Tensor) -> Tensor:
    """Greedy facility location on block-diagonal similarities: chosen mask [nb, m].

    ``sim`` [nb, m, m] (symmetric, >= 0, 0 at padding), ``valid`` [nb, m], ``block_group`` [nb]
    (group of each block, 0..G-1), ``budgets`` [G] (points per group, at least its number of
    blocks). Each block's first pick is its greedy first pick; the rest of a group's budget
    follows the largest marginal gains over its blocks.
    """
    chosen, cur, bound = _first_picks(sim, valid)
    left = budgets - torch.bincount(block_group, minlength=len(budgets))
    thresholds = _Thresholds(block_group, left, cur)
    last = cur.new_full((len(block_group),), math.inf)
    picks = _Picks([], [], [])
    active = torch.nonzero(left[block_group] > 0)[:, 0]
    while active.numel():
        j, g = _best(sim, cur, bound, active)
        keep = g > -math.inf  # blocks with candidates left
        active, j, g = active[keep], j[keep], torch.minimum(g[keep], last[active[keep]])
        last[active] = g  # gains kept non-increasing per block against rounding
        cur.index_copy_(
            0, active, torch.maximum(cur.index_select(0, active), block_rows(sim, active, j))
        )
        bound.view(-1).index_fill_(0, active * bound.shape[1] + j, -math.inf)
        picks.block.append(active)
        picks.pos.append(j)
        picks.gain.append(g)
        thresholds.record(active, g)
        active = active[thresholds.alive(active, g)]
    b, j = picks.top(block_group, left)
    chosen[b, j] = True
    return chosen


def cluster_weights(sim: Tensor, chosen: Tensor, valid: Tensor) -> Tensor:
    """``gamma`` [nb, m]: for each chosen point, how many valid points of its block have it as
    their most similar chosen point (itself included); 0 elsewhere. Overwrites ``sim``."""
    nb, m = int(chosen.shape[0]), int(chosen.shape[1])
    owner = sim.masked_fill_(~chosen[:, None, :], -math.inf).argmax(2)
    own = torch.arange(m, device=sim.device).expand(nb, m)
    owner = torch.where(chosen, own, owner)  # a chosen point is its own (also among duplicates)
    gamma = torch.zeros((nb, m), dtype=torch.float64, device=sim.device)
    return gamma.scatter_add_(1, owner, valid.to(torch.float64))


def block_size(max_block: int, sizes: Sequence[int], budgets: Sequence[int]) -> int:
    """Largest block size: ``max_block``, raised where needed so every group's budget covers
    one medoid per block (blocks hold more than half the limit, so ``2 n / k`` suffices)."""
    need = [math.ceil(2 * n / k) for n, k in zip(sizes, budgets, strict=True) if k > 0]
    return max([max(1, int(max_block)), *need])


def craig(
    kernel: GradKernel,
    groups: Sequence[IntArray],
    budgets: Sequence[int],
    *,
    max_block: int = 256,
    seed: int = 0,
) -> list[tuple[IntArray, FloatArray]]:
    """CRAIG subsets of several groups of atoms at once.

    ``groups``: disjoint position arrays into ``kernel``; ``budgets``: points to choose in each
    (at most its size). Returns, per group, the chosen positions (into ``kernel``, sorted) and
    their weights ``gamma`` (float64, summing to the group's size when its budget is > 0).
    """
    out: dict[int, tuple[IntArray, FloatArray]] = {}
    live = [g for g, (grp, k) in enumerate(zip(groups, budgets, strict=True)) if k > 0 and len(grp)]
    m = block_size(max_block, [len(groups[g]) for g in live], [budgets[g] for g in live])
    for batch in batches([len(groups[g]) for g in live], m):  # bounded memory
        which = [live[i] for i in batch]
        with single_thread_on_cpu(kernel.device):
            parts = _solve(kernel, [groups[g] for g in which], [budgets[g] for g in which], m, seed)
        out.update(zip(which, parts, strict=True))
    return [
        out.get(g, (np.zeros(0, np.int64), np.zeros(0, np.float64))) for g in range(len(groups))
    ]


def _solve(
    kernel: GradKernel, groups: list[IntArray], budgets: list[int], m: int, seed: int
) -> list[tuple[IntArray, FloatArray]]:
    """Per group: chosen positions (sorted) and cluster-size weights, blocks of at most m."""
    blocks = split(kernel, groups, m, seed)
    sim = block_similarity(kernel, blocks.pos)
    budget_t = torch.tensor(budgets, dtype=torch.long, device=kernel.device)
    chosen = greedy(sim, blocks.valid, blocks.group, budget_t)
    gamma = cluster_weights(sim, chosen, blocks.valid)
    pos = blocks.pos[chosen].cpu().numpy()
    owner = blocks.group[:, None].expand_as(chosen)[chosen].cpu().numpy()
    weights = gamma[chosen].cpu().numpy()
    out = []
    for i in range(len(groups)):
        mine = owner == i
        order = np.argsort(pos[mine], kind="stable")
        out.append((pos[mine][order], weights[mine][order]))
    return out


def facility_location(
    kernel: GradKernel, k: int, *, max_block: int = 256, seed: int = 0
) -> tuple[IntArray, FloatArray]:
    """CRAIG on one group: chosen positions (sorted) and their cluster-size weights."""
    k = min(max(int(k), 0), kernel.n)
    return craig(kernel, [np.arange(kernel.n, dtype=np.int64)], [k], max_block=max_block,
                 seed=seed)[0]  # fmt: skip
