"""Property tests for CRAIG (``hpd.subset.craig``) against a plain greedy facility-location oracle.

The oracle recomputes every marginal gain of every candidate at every step (numpy, float64), on
similarities built here from the points themselves (distances from differences, where the
solver uses the Gram), so it shares nothing with the lazy, lockstep solver but the documented
problem: per block, ``s_ij = max D - D_ij``; every block first gets its greedy first pick
(largest row sum), then the group's remaining budget goes to the largest marginal gains over
its blocks. A group of at most ``max_block`` points is one block, where this is plain greedy.

Shapes (``tests.subset.problems``): 1-6 imbalanced classes, some of 1-2 samples, 1-40
dimensions, clustered / Gaussian / duplicated / constant points, fractions from 0.005 to 1,
``max_block`` from 1 to 256: classes split to different depths, so their blocks come out of
``partition`` in no particular group order (the cause of issue 17's IndexError); and
``greedy`` alone on block-diagonal problems with the blocks in random order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from hpd.subset import craig as craig_module  # noqa: E402
from hpd.subset import select  # noqa: E402
from hpd.subset.blocks import Blocks  # noqa: E402
from hpd.subset.craig import greedy  # noqa: E402
from tests.subset.problems import Problem, bounded, expected_size, problems  # noqa: E402

# -- the oracle --------------------------------------------------------------------------------


def oracle_similarity(X: np.ndarray) -> np.ndarray:
    """``s_ij = max D - D_ij`` of one block of points [m, d], float64, with the distances
    ``D_ij = ||x_i - x_j||`` taken from the differences (the solver takes them from the Gram)."""
    D = np.sqrt(np.square(X[:, None, :] - X[None, :, :]).sum(2))
    return D.max() - D


def coverage(sim: np.ndarray, picks: list[int]) -> float:
    """``F(S) = sum_i max_{j in S} s_ij`` of one block (0 for no picks)."""
    return float(sim[:, picks].max(1).sum()) if picks else 0.0


def oracle_greedy(sims: list[np.ndarray], k: int) -> list[list[int]]:
    """Plain greedy on one group's blocks: each block's first greedy pick (largest gain from
    the empty set = row sum; lowest position on ties), then ``k - len(sims)`` times the largest
    marginal gain ``sum_i max(s_ij - cur_i, 0)`` over all candidates of all blocks, every gain
    recomputed from scratch."""
    picks = [[int(np.argmax(s.sum(0)))] for s in sims]
    cur = [s[:, p[0]].copy() for s, p in zip(sims, picks, strict=True)]
    for _ in range(k - len(sims)):
        best: tuple[float, int, int] | None = None
        for b, s in enumerate(sims):
            gains = np.maximum(s - cur[b][:, None], 0.0).sum(0)
            gains[picks[b]] = -math.inf
            j = int(np.argmax(gains))
            if gains[j] > -math.inf and (best is None or gains[j] > best[0]):
                best = (float(gains[j]), b, j)
        assert best is not None, "budget larger than the group"
        _, b, j = best
        picks[b].append(j)
        cur[b] = np.maximum(cur[b], sims[b][:, j])
    return picks


def cluster_sizes(sim: np.ndarray, picks: list[int]) -> np.ndarray | None:
    """Documented weights of one block: for each pick, how many points have it as their most
    similar pick (a pick counts itself). None when some point's nearest pick is a near-tie
    (then either answer is right)."""
    P = sorted(picks)
    cols = sim[:, P]
    owner = cols.argmax(1)
    if len(P) > 1:
        top2 = np.sort(cols, 1)[:, -2:]
        gap = top2[:, 1] - top2[:, 0]
        ambiguous = (gap <= 1e-6 * (abs(float(sim.max())) + 1e-300)) & ~np.isin(
            np.arange(len(sim)), P
        )
        if ambiguous.any():
            return None
    for i, p in enumerate(P):
        owner[p] = i
    return np.bincount(owner, minlength=len(P)).astype(np.float64)


def is_greedy_run(sims: list[np.ndarray], got: list[list[int]], tol: float) -> bool:
    """Is ``got`` (each block's picks) what the oracle's greedy returns under *some* breaking of
    ties (gains within ``tol`` of the best)? Depth-first over the tied choices (rare: exact
    ties come from symmetries, e.g. 1-D points, where a whole range of centres covers equally),
    remembering the pick sets already refuted. Each step may only take a pick of ``got``."""
    want = [set(P) for P in got]
    k, nb = sum(len(P) for P in want), len(sims)
    picks: list[set[int]] = [set() for _ in sims]
    cur = [np.zeros(len(sm)) for sm in sims]
    gains = [sm.sum(0) for sm in sims]  # from the empty set: the row sums
    refuted: set[frozenset[tuple[int, int]]] = set()

    def options() -> list[tuple[int, int]]:
        if len(path) < nb:  # first every block's medoid, block by block
            b = len(path)
            return [(b, j) for j in sorted(want[b]) if gains[b][j] >= gains[b].max() - tol]
        best = max((float(gains[b].max()) for b in range(nb)), default=-math.inf)
        return [
            (b, j) for b in range(nb) for j in sorted(want[b] - picks[b])
            if gains[b][j] >= best - tol
        ]  # fmt: skip

    def take(b: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        undo = cur[b], gains[b]
        picks[b].add(j)
        cur[b] = np.maximum(cur[b], sims[b][:, j])
        gains[b] = np.maximum(sims[b] - cur[b][:, None], 0.0).sum(0)
        gains[b][sorted(picks[b])] = -math.inf
        return undo

    path: list[tuple[int, int, tuple[np.ndarray, np.ndarray]]] = []
    stack = [iter(options())]
    while stack:
        if len(path) == k:
            return True
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            if path:
                refuted.add(frozenset((b, j) for b, j, _ in path))
                b, j, (cur[b], gains[b]) = path.pop()
                picks[b].discard(j)
            continue
        b, j = nxt
        undo = take(b, j)
        path.append((b, j, undo))
        if frozenset((b, j) for b, j, _ in path) in refuted:
            path.pop()
            picks[b].discard(j)
            cur[b], gains[b] = undo
            continue
        stack.append(iter(options()))
    return False


# -- the blocks the solver used ---------------------------------------------------------------


@contextmanager
def captured_blocks() -> Iterator[list[Blocks]]:
    """The blocks ``craig`` solves (it splits the groups itself; the test needs the same
    blocks to pose the oracle's problem). The solver still runs unchanged."""
    real = craig_module.split
    calls: list[Blocks] = []

    def spy(*args: Any, **kwargs: Any) -> Blocks:
        out = real(*args, **kwargs)
        calls.append(out)
        return out

    craig_module.split = spy  # type: ignore[assignment]
    try:
        yield calls
    finally:
        craig_module.split = real  # type: ignore[assignment]


# -- checks ------------------------------------------------------------------------------------


def check_selection(p: Problem, idx: np.ndarray, w: np.ndarray) -> None:
    """Sizes exact (per class: ``apportion`` of ``ceil(fraction * n)``), indices sorted,
    unique and in range, weights finite and summing to each selected class's size."""
    n = len(p.X)
    assert idx.dtype == np.int64 and w.dtype == np.float64
    assert len(idx) == len(w) == expected_size(p.fraction, n)
    assert (np.diff(idx) > 0).all()  # sorted and unique
    assert idx.min() >= 0 and idx.max() < n
    assert np.isfinite(w).all() and (w >= 1).all()
    for grp, q in zip(p.groups, p.quotas, strict=True):
        mine = np.isin(idx, grp)
        assert int(mine.sum()) == q
        assert w[mine].sum() == (len(grp) if q else 0)  # counts of points: exact in float64


def run_craig(p: Problem, grads: Any) -> tuple[np.ndarray, np.ndarray, list[Blocks]]:
    with captured_blocks() as calls:
        idx, w = select(
            "craig", grads, p.fraction, labels=p.labels, seed=p.seed, max_block=p.max_block
        )
    check_selection(p, idx, w)
    live = [q > 0 for q in p.quotas]
    assert len(calls) == 1  # the test's problems fit in one batch of groups
    group = calls[0].group
    event(f"blocks per class > 1: {len(group) > sum(live)}")
    event(f"blocks out of group order: {bool((group[1:] < group[:-1]).any())}")
    assert len(torch.unique(calls[0].group)) == sum(live)
    return idx, w, calls


def per_group(p: Problem, idx: np.ndarray, w: np.ndarray, blocks: Blocks) -> Iterator[Any]:
    """For each selected class: its blocks' similarities (oracle), the selection's local
    picks and weights per block, and the class's budget."""
    pos, bgroup = blocks.pos.numpy(), blocks.group.numpy()
    where = {int(a): (b, j) for b, row in enumerate(pos) for j, a in enumerate(row) if a >= 0}
    live = [g for g, q in enumerate(p.quotas) if q > 0]
    picks: dict[int, list[int]] = {b: [] for b in range(len(pos))}
    weights: dict[int, list[float]] = {b: [] for b in range(len(pos))}
    for i, wi in zip(idx.tolist(), w.tolist(), strict=True):
        b, j = where[i]  # every chosen row lies in a block
        picks[b].append(j)
        weights[b].append(wi)
    for gi, g in enumerate(live):
        mine = np.flatnonzero(bgroup == gi).tolist()
        rows = [pos[b][pos[b] >= 0] for b in mine]
        # the blocks partition the class: every sample once, nothing from another class
        assert sorted(np.concatenate(rows).tolist()) == p.groups[g].tolist()
        sims = [oracle_similarity(p.X[r]) for r in rows]
        yield sims, [picks[b] for b in mine], [weights[b] for b in mine], p.quotas[g]


def check_weights(sims: list[np.ndarray], got: list[list[int]], wts: list[list[float]]) -> None:
    """Weights are the blocks' cluster sizes: they sum to the block's size (each block is
    its own clustering), and equal the oracle's counts wherever nearest picks are not tied."""
    for s, P, wb in zip(sims, got, wts, strict=True):
        assert sum(wb) == len(s)
        ref = cluster_sizes(s, P)
        if ref is not None:
            order = np.argsort(P)
            np.testing.assert_array_equal(np.asarray(wb)[order], ref)


# -- the tests ---------------------------------------------------------------------------------


def check_objective(
    sims: list[np.ndarray], got: list[list[int]], k: int, generic: bool, rel: float
) -> None:
    """The selection against the oracle, in three steps, tightest first.

    1. ``got`` is a greedy run: plain greedy, with some breaking of ties, returns exactly it
       (``is_greedy_run``; gains compared to ``rel`` of a block's largest possible gain). The
       lazy solver evaluates exact gains (stale bounds only skip candidates whose bound is
       below a fresh gain) and merges the blocks' greedy sequences by gain, so this holds up
       to the rounding of its own similarities.
    2. In general position (``generic``: no exact ties but swaps of duplicates, which leave
       the objective unchanged) its objective equals the oracle's, ``rel`` relative: ties
       between blocks do not change a sum over blocks, and within a block both break ties by
       the lowest position. Exact ties do arise for points on a line (every centre between
       the two middle points covers a 1-D block equally), where another tie-break leads to
       another greedy run and another objective, in either direction.
    3. Always, the greedy bound: with the blocks' medoids M taken, both runs are greedy on the
       monotone submodular ``T -> F(M + T) - F(M)`` with the same budget, so each gets at
       least (1 - 1/e) of the best increment, hence of the other's:
       ``F(L) >= (1 - 1/e) F(O) + F(M) / e``.
    """
    assert all(len(P) >= 1 for P in got)  # every block keeps its medoid
    assert sum(len(P) for P in got) == k
    scale = max(float(s.max()) * len(s) for s in sims)
    assert is_greedy_run(sims, got, tol=rel * scale + 1e-300)
    ref = oracle_greedy(sims, k)
    f_got = sum(coverage(s, P) for s, P in zip(sims, got, strict=True))
    f_ref = sum(coverage(s, P) for s, P in zip(sims, ref, strict=True))
    f_med = sum(coverage(s, P[:1]) for s, P in zip(sims, ref, strict=True))
    slack = rel * f_ref + 1e-300
    if generic:
        assert math.isclose(f_got, f_ref, rel_tol=rel, abs_tol=1e-300)
    assert f_got >= (1 - 1 / math.e) * f_ref + f_med / math.e - slack


@bounded(40)
@given(problems())
def test_craig_is_plain_greedy_in_float64(p: Problem) -> None:
    """float64 gradients, every shape: sizes, indices and weights as documented, the picks a
    greedy run of the oracle, its objective within ``check_objective``'s bounds (equal in
    general position, to 1e-6: the solver's Gram-based distances of near points are off by
    up to ~1e-8 relative), the weights the blocks' cluster sizes."""
    idx, w, (blocks,) = run_craig(p, p.X)
    generic = p.X.shape[1] >= 2
    for sims, got, wts, k in per_group(p, idx, w, blocks):
        check_objective(sims, got, k, generic, rel=1e-6)
        check_weights(sims, got, wts)


@bounded(15)
@given(problems(max_class=400, max_dim=40))
def test_craig_float32_tensors_keep_the_greedy_bound(p: Problem) -> None:
    """float32 torch gradients (a trial's usual input), larger classes (more, deeper blocks):
    sizes, indices and weights as documented, and the greedy bound against the oracle in
    float64. Only the bound: float32 similarities are off by up to ~3e-4 relative for near
    points (the Gram formula's cancellation), enough to flip near-ties onto another greedy
    path; the slack covers that rounding, not a wrong pick."""
    X32 = torch.from_numpy(p.X).float()
    p = Problem(X32.double().numpy(), p.labels, p.fraction, p.max_block, p.seed)
    idx, w, (blocks,) = run_craig(p, X32)
    for sims, got, wts, k in per_group(p, idx, w, blocks):
        assert all(len(P) >= 1 for P in got) and sum(len(P) for P in got) == k
        ref = oracle_greedy(sims, k)
        f_got = sum(coverage(s, P) for s, P in zip(sims, got, strict=True))
        f_ref = sum(coverage(s, P) for s, P in zip(sims, ref, strict=True))
        f_med = sum(coverage(s, P[:1]) for s, P in zip(sims, ref, strict=True))
        assert f_got >= (1 - 1 / math.e) * f_ref + f_med / math.e - 1e-3 * f_ref - 1e-300
        for s, wb in zip(sims, wts, strict=True):
            assert sum(wb) == len(s) and all(x >= 1 and x == int(x) for x in wb)


@st.composite
def block_problems(
    draw: Callable[..., Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int], bool]:
    """Random block-diagonal problems: 1-4 groups of 1-5 blocks of 1-10 points each, the blocks
    in a random order (not sorted by group), budgets from one per block to every point."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sizes_per_group = draw(
        st.lists(st.lists(st.integers(1, 10), min_size=1, max_size=5), min_size=1, max_size=4)
    )
    order = draw(st.permutations(range(sum(len(s) for s in sizes_per_group))))
    dim = draw(st.integers(1, 6))
    flat = [(g, n) for g, sizes in enumerate(sizes_per_group) for n in sizes]
    flat = [flat[i] for i in order]
    m = max(n for _, n in flat)
    sim = torch.zeros((len(flat), m, m), dtype=torch.float64)
    for b, (_, n) in enumerate(flat):
        sim[b, :n, :n] = torch.from_numpy(oracle_similarity(rng.standard_normal((n, dim))))
    # at least one point per block (``greedy``'s precondition), at most all of them
    budgets = [draw(st.integers(len(sizes), sum(sizes))) for sizes in sizes_per_group]
    valid = torch.arange(m)[None, :] < torch.tensor([n for _, n in flat])[:, None]
    block_group = torch.tensor([g for g, _ in flat])
    return sim, valid, block_group, budgets, dim >= 2


@bounded(50)
@given(block_problems())
def test_greedy_on_blocks_in_any_order_is_plain_greedy(
    problem: tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int], bool],
) -> None:
    """``greedy`` itself, on the very similarities the oracle sees, blocks in any order: no
    padding chosen, and per group ``check_objective`` to 1e-9 (exactly its budget, a medoid
    per block, a greedy run, plain greedy's objective in general position)."""
    sim, valid, block_group, budgets, generic = problem
    chosen = greedy(sim.clone(), valid, block_group, torch.tensor(budgets))
    assert not chosen[~valid].any()
    for g, k in enumerate(budgets):
        mine = torch.nonzero(block_group == g)[:, 0].tolist()
        sims = [sim[b][valid[b]][:, valid[b]].numpy() for b in mine]
        got = [torch.nonzero(chosen[b])[:, 0].tolist() for b in mine]
        check_objective(sims, got, k, generic, rel=1e-9)
