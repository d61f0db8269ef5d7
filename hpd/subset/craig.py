"""CRAIG's solver: greedy facility location on gradient distances.

Owns ``facility_location``: from a ``GradKernel`` build ``D_ij = ||g_i - g_j||`` (from the Gram,
``sqrt(max(K_ii + K_jj - 2 K_ij, 0))``), similarities ``s_ij = max D - D_ij`` and greedily
maximise ``F(S) = sum_i max_{j in S} s_ij``. On the CPU by lazy greedy (a max-heap of stale
upper bounds, exact same objective as naive greedy); on an accelerator by dense greedy (all gains
in one pass per step). Weights ``gamma_j`` = number of points whose most similar chosen point is
j (each chosen point counts itself, so ``gamma_j >= 1`` and they sum to n).

Must never: materialise more than one [n, n] block per call (callers split large problems),
or do any sample/label bookkeeping.
"""

from __future__ import annotations

import heapq

import numpy as np
import numpy.typing as npt
import torch

from hpd.subset.kernels import GradKernel

Tensor = torch.Tensor


def similarity(kernel: GradKernel) -> Tensor:
    """``s_ij = max D - D_ij`` with ``D`` the pairwise gradient distances, shape [n, n]
    (built in place in one [n, n] buffer)."""
    K = kernel.columns(torch.arange(kernel.n, device=kernel.device))
    sq = K.diagonal().clone()
    D = K.mul_(-2).add_(sq[:, None]).add_(sq[None, :]).clamp_(min=0).sqrt_()
    D.fill_diagonal_(0)
    top = D.max() if D.numel() else D.new_zeros(())
    return D.neg_().add_(top)


def lazy_greedy(sim: npt.NDArray[np.floating], k: int) -> list[int]:
    """Facility location by lazy greedy on a symmetric similarity matrix (numpy, CPU).

    Memory-bound: each refreshed bound reads one row (batching the refreshes did not help).
    """
    n = sim.shape[0]
    k = min(k, n)
    cur = np.zeros(n, dtype=sim.dtype)
    heap = [(-float(g), j) for j, g in enumerate(sim.sum(1, dtype=np.float64))]
    heapq.heapify(heap)
    chosen: list[int] = []
    while len(chosen) < k and heap:
        _, j = heapq.heappop(heap)
        gain = float(np.maximum(sim[j] - cur, 0).sum(dtype=np.float64))
        if not heap or gain >= -heap[0][0] * (1 - 1e-12):
            chosen.append(j)
            np.maximum(cur, sim[j], out=cur)
        else:
            heapq.heappush(heap, (-gain, j))
    return chosen


def dense_greedy(sim: Tensor, k: int) -> list[int]:
    """Facility location by naive greedy, all gains per step in one pass (for accelerators)."""
    n = int(sim.shape[0])
    k = min(k, n)
    cur = sim.new_zeros(n)
    taken = torch.zeros(n, dtype=torch.bool, device=sim.device)
    chosen = torch.empty(k, dtype=torch.long, device=sim.device)
    for t in range(k):
        gains = (sim - cur[:, None]).clamp_min_(0).sum(0, dtype=torch.float64)
        j = torch.argmax(gains.masked_fill(taken, -1.0))
        chosen[t] = j
        taken[j] = True
        cur = torch.maximum(cur, sim[j])
    return [int(x) for x in chosen.tolist()]


def objective(sim: Tensor | npt.NDArray[np.floating], chosen: list[int]) -> float:
    """``F(S) = sum_i max_{j in S} s_ij`` (0 for the empty set)."""
    if not chosen:
        return 0.0
    s = torch.as_tensor(sim)
    return float(s[:, chosen].max(1).values.sum(dtype=torch.float64))


def cluster_sizes(sim: Tensor, chosen: list[int]) -> Tensor:
    """``gamma_j``: how many points have chosen point j as most similar (float64 [len(chosen)])."""
    if not chosen:
        return torch.zeros(0, dtype=torch.float64)
    cidx = torch.tensor(chosen, dtype=torch.long, device=sim.device)
    owner = sim[:, cidx].argmax(1)
    owner[cidx] = torch.arange(len(chosen), device=sim.device)  # a chosen point is its own
    return torch.bincount(owner, minlength=len(chosen)).to(torch.float64).cpu()


def facility_location(
    kernel: GradKernel, k: int, *, lazy: bool | None = None
) -> tuple[list[int], Tensor]:
    """Chosen positions (into the kernel) and their cluster-size weights (float64, CPU).

    ``lazy`` defaults to True on the CPU and False on accelerators.
    """
    if kernel.n == 0 or k <= 0:
        return [], torch.zeros(0, dtype=torch.float64)
    sim = similarity(kernel)
    if lazy is None:
        lazy = sim.device.type == "cpu"
    chosen = lazy_greedy(sim.cpu().numpy(), k) if lazy else dense_greedy(sim, k)
    return chosen, cluster_sizes(sim, chosen)
