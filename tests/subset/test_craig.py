"""CRAIG (greedy facility location in blocks, oracle 8 of §4.6) and the block machinery."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hpd.subset import DenseGrads, apportion, budget, match_error, select  # noqa: E402
from hpd.subset import blocks as blocks_module  # noqa: E402
from hpd.subset.blocks import batches, block_matrix, partition  # noqa: E402
from hpd.subset.craig import (  # noqa: E402
    block_similarity,
    facility_location,
    greedy,
    objective,
    similarity,
)


def naive_greedy(sim: torch.Tensor, k: int) -> list[int]:
    """Reference: greedy facility location, every gain recomputed at every step."""
    cur = sim.new_zeros(sim.shape[0])
    chosen: list[int] = []
    for _ in range(k):
        gains = (sim - cur[:, None]).clamp_min(0).sum(0)
        gains[chosen] = -1.0
        j = int(gains.argmax())
        chosen.append(j)
        cur = torch.maximum(cur, sim[:, j])
    return chosen


def naive_blocked(sims: list[torch.Tensor], k: int) -> list[list[int]]:
    """Reference for one group of blocks: each block's first greedy pick, then the largest
    marginal gain over all blocks, recomputed from scratch at every step."""
    picks = [naive_greedy(s, 1) for s in sims]
    for _ in range(k - len(sims)):
        best = (-1.0, -1, -1)
        for b, s in enumerate(sims):
            cur = s[:, picks[b]].max(1).values
            gains = (s - cur[:, None]).clamp_min(0).sum(0)
            gains[picks[b]] = -1.0
            j = int(gains.argmax())
            best = max(best, (float(gains[j]), -b, j))
        picks[-best[1]].append(best[2])
    return picks


def _points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)))


def test_one_block_is_plain_greedy_with_cluster_size_weights(softmax_features) -> None:
    """Oracle 8: a group that fits in one block gets exactly naive greedy's picks; gamma are
    cluster sizes (each >= 1, summing to n)."""
    F = softmax_features.subset(torch.arange(0, 300))
    sim = similarity(F)
    for k in (1, 5, 30):
        pos, w = facility_location(F, k, max_block=F.n)
        ref = naive_greedy(sim, k)
        assert sorted(pos.tolist()) == sorted(ref)
        assert objective(sim, pos.tolist()) == pytest.approx(objective(sim, ref), rel=1e-9)
        assert w.sum() == pytest.approx(F.n)
        assert (w >= 1).all()
        owner = sim[:, pos].argmax(1)
        owner[pos] = torch.arange(len(pos))
        np.testing.assert_array_equal(w, np.bincount(owner.numpy(), minlength=len(pos)))


def test_greedy_within_1_minus_1_over_e_of_optimum() -> None:
    for seed in range(3):
        A = DenseGrads(_points(11, 3, seed))
        sim = similarity(A)
        for k in (2, 3):
            best = max(objective(sim, list(S)) for S in itertools.combinations(range(11), k))
            pos, _ = facility_location(A, k, max_block=11)
            assert objective(sim, pos.tolist()) >= (1 - 1 / math.e) * best - 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blocked_greedy_equals_greedy_on_the_block_diagonal_problem(seed: int) -> None:
    """Lazy, lockstep greedy over blocks of two groups picks what naive greedy on each
    group's block-diagonal similarity picks (first pick per block, then the best gains)."""
    rng = np.random.default_rng(seed)
    sizes, groups, budgets = [7, 5, 9, 6, 8], [0, 0, 0, 1, 1], [10, 7]
    A = DenseGrads(_points(sum(sizes), 4, seed))
    ids = np.split(rng.permutation(A.n), np.cumsum(sizes)[:-1])
    blocks = torch.full((len(sizes), max(sizes)), -1, dtype=torch.long)
    for b, i in enumerate(ids):
        blocks[b, : len(i)] = torch.from_numpy(i)
    sim = block_similarity(A, blocks)
    chosen = greedy(sim, blocks >= 0, torch.tensor(groups), torch.tensor(budgets))
    for g, k in enumerate(budgets):
        mine = [b for b in range(len(sizes)) if groups[b] == g]
        ref = naive_blocked([sim[b, : sizes[b], : sizes[b]] for b in mine], k)
        got = [sorted(torch.nonzero(chosen[b])[:, 0].tolist()) for b in mine]
        assert got == [sorted(r) for r in ref]
    assert not chosen[blocks < 0].any()


def test_partition_makes_small_coherent_blocks_within_groups() -> None:
    """Blocks cover every point once, stay inside their group, hold more than half and at
    most all of ``max_size``, and do not mix well-separated clusters."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((4, 5)) * 50
    z = torch.from_numpy(np.concatenate([c + rng.standard_normal((64, 5)) for c in centres]))
    group = torch.tensor([0] * 128 + [1] * 128)
    blocks, block_group = partition(z.float(), group, 64)
    members = blocks[blocks >= 0]
    assert sorted(members.tolist()) == list(range(256))
    sizes = (blocks >= 0).sum(1)
    assert bool(((sizes > 32) & (sizes <= 64)).all())
    for b in range(len(blocks)):
        pts = blocks[b][blocks[b] >= 0]
        assert (group[pts] == block_group[b]).all()
        assert len(torch.unique(pts // 64)) == 1  # one cluster per block
    np.testing.assert_array_equal(
        block_matrix(torch.tensor([1, 0, 1, 1])), [[1, -1, -1], [0, 2, 3]]
    )


def test_blocked_craig_per_class(softmax_features) -> None:
    """Classes split into blocks (max_block 64 for 300-sample classes): per-class budgets,
    cluster-size weights summing to each class's size, determinism, and a match far better
    than stratified random's."""
    F, labels = softmax_features, softmax_features.labels.numpy()
    frac = 0.1
    idx, w = select("craig", F, frac, labels=F.labels, seed=4, max_block=64)
    assert len(idx) == budget(frac, F.n) == len(np.unique(idx))
    counts = np.bincount(labels[idx], minlength=6)
    assert counts.tolist() == apportion(len(idx), np.bincount(labels).tolist())
    np.testing.assert_allclose(np.bincount(labels[idx], weights=w), np.bincount(labels))
    assert (w >= 1).all()
    again = select("craig", F, frac, labels=F.labels, seed=4, max_block=64)
    np.testing.assert_array_equal(idx, again[0])
    np.testing.assert_array_equal(w, again[1])
    rnd = np.mean(
        [match_error(F, *select("random", F, frac, labels=F.labels, seed=s)) for s in range(8)]
    )
    assert match_error(F, idx, w) < 0.6 * rnd


def test_tiny_budget_raises_the_block_size() -> None:
    """A budget smaller than the number of blocks would be: blocks grow so each can have one
    medoid; the result still has exactly the budget."""
    A = DenseGrads(_points(500, 6, 5))
    pos, w = facility_location(A, 3, max_block=16)
    assert len(pos) == 3 == len(np.unique(pos))
    assert w.sum() == pytest.approx(500)


@pytest.mark.parametrize("strategy", ["craig", "gradmatch"])
def test_groups_solved_in_memory_bounded_batches_give_the_same_subset(
    strategy: str, softmax_features, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups are independent: splitting them into batches (to bound the [nb, m, m] memory)
    changes nothing."""
    F = softmax_features
    kw = {"labels": F.labels, "seed": 1, "max_block": 64}
    whole = select(strategy, F, 0.2, **kw)
    assert batches([300] * 6, 64) == [[0, 1, 2, 3, 4, 5]]
    monkeypatch.setattr(blocks_module, "MAX_ENTRIES", 300 * 64 * 2)
    assert batches([300] * 6, 64) == [[0, 1], [2, 3], [4, 5]]
    parts = select(strategy, F, 0.2, **kw)
    np.testing.assert_array_equal(whole[0], parts[0])
    np.testing.assert_allclose(whole[1], parts[1])
