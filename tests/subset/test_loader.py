"""SubsetLoader: weighted batches whose indices always refer to the dataset (§3.3, §4.6 #11)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from hpd.subset import SubsetLoader, budget, last_layer_features, select  # noqa: E402
from hpd.subset.loader import _seed  # noqa: E402

from .conftest import clustered_data  # noqa: E402


class IdNet(nn.Module):
    """Ignores column 0 of x, which carries the sample's dataset index; has BatchNorm."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x[:, 1:]))


def _dataset(n_per_class: int = 100) -> tuple[torch.utils.data.TensorDataset, IdNet]:
    x, y = clustered_data(n_per_class=n_per_class)
    ids = torch.arange(len(x), dtype=torch.float32)[:, None]
    torch.manual_seed(0)
    model = IdNet(x.shape[1], int(y.max()) + 1)
    xs = torch.cat([ids, x], 1)
    model(xs)  # BatchNorm statistics
    return torch.utils.data.TensorDataset(xs, y), model


def _epoch(loader: SubsetLoader) -> tuple[np.ndarray, np.ndarray, list[int]]:
    ids, ws, sizes = [], [], []
    for xb, yb, wb in loader:
        assert xb.shape[0] == yb.shape[0] == wb.shape[0]
        ids.append(xb[:, 0].long().numpy())
        ws.append(wb.numpy())
        sizes.append(len(yb))
    return np.concatenate(ids), np.concatenate(ws), sizes


@pytest.mark.parametrize("strategy", ["random", "gradmatch", "craig"])
def test_shuffled_batches_carry_the_right_samples_and_weights(strategy: str) -> None:
    ds, model = _dataset()
    model.train()
    loader = SubsetLoader(
        ds, strategy=strategy, fraction=0.1, select_every=1, model=model, batch_size=16, seed=5
    )
    _epoch(loader)  # epoch 0: stratified random
    ids, ws, sizes = _epoch(loader)  # epoch 1: the strategy, on the current model
    assert model.training
    assert model.norm.training
    assert len(ids) == budget(0.1, len(ds)) == len(loader.indices)
    assert len(np.unique(ids)) == len(ids)
    order = np.argsort(ids)
    np.testing.assert_array_equal(ids[order], loader.indices)
    np.testing.assert_allclose(ws[order], loader.weights, rtol=1e-6)
    assert ws.mean() == pytest.approx(1.0, rel=1e-5)
    assert len(sizes) == len(loader)
    # the selection is exactly what select() gives on features of the dataset in index order
    feats = last_layer_features(model, ds)
    want, w = select(strategy, feats, 0.1, labels=feats.labels, seed=_seed(5, 1, 1))
    np.testing.assert_array_equal(loader.indices, want)
    np.testing.assert_allclose(loader.weights, w * len(w) / w.sum(), rtol=1e-5)
    ids2, _, _ = _epoch(loader)
    assert not np.array_equal(ids, ids2)  # reshuffled per epoch
    np.testing.assert_array_equal(np.sort(ids2), loader.indices)


def test_reselects_every_r_epochs_and_reports_timings() -> None:
    ds, model = _dataset()
    seen: list[dict] = []
    loader = SubsetLoader(
        ds,
        strategy="gradmatch",
        fraction=0.2,
        select_every=2,
        model=model,
        batch_size=32,
        on_timing=seen.append,
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    hashes = []
    for _ in range(5):
        for xb, yb, wb in loader:  # the intended use: a weighted-mean loss
            loss = (nn.functional.cross_entropy(model(xb), yb, reduction="none") * wb).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        hashes.append(loader.timings.subset_hash)
    assert loader.timings.selections == 3  # epochs 0, 2, 4
    assert hashes[0] == hashes[1] != hashes[2] == hashes[3] != hashes[4]
    assert len(seen) == 5
    assert set(seen[-1]) == {
        "strategy",
        "fraction",
        "selection_s",
        "selection_total_s",
        "epoch_s",
        "subset_size",
        "selections",
    }
    assert json.loads(json.dumps(seen[-1])) == seen[-1]
    assert seen[-1]["subset_size"] == budget(0.2, len(ds))
    assert seen[-1]["selection_total_s"] >= seen[-1]["selection_s"] > 0
    assert loader.timings.features_seconds > 0
    loader.set_epoch(10)
    _epoch(loader)
    assert loader.timings.selections == 4
    assert loader.epoch == 11


@pytest.mark.parametrize("pool", [None, 2.0])
def test_per_batch_mode_yields_whole_chosen_batches(pool: float | None) -> None:
    ds, model = _dataset()
    loader = SubsetLoader(
        ds,
        strategy="gradmatch",
        per_batch=True,
        fraction=0.125,
        select_every=1,
        model=model,
        batch_size=20,
        seed=1,
        pool=pool,
    )
    for epoch in range(2):
        got = []
        for xb, _, wb in loader:
            got.append(tuple(sorted(xb[:, 0].long().tolist())))
            assert torch.all(wb == wb[0])  # one weight per batch
        chosen = {tuple(sorted(b.tolist())) for b in loader.batches}
        assert set(got) == chosen
        assert len(got) == len(loader) == budget(0.125, len(ds) // 20)
        assert epoch == 0 or loader.timings.features_seconds > 0
    assert len(np.concatenate(loader.batches)) == len(loader.indices)
    # every batch is a block of the seeded partition of the dataset
    perm = np.random.default_rng(_seed(1, 1, 1)).permutation(len(ds))
    blocks = {tuple(sorted(perm[s : s + 20].tolist())) for s in range(0, len(ds), 20)}
    assert {tuple(sorted(b.tolist())) for b in loader.batches} <= blocks


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, base: torch.utils.data.TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.base[i]
        return x, int(y)


def test_generic_dataset_and_dataloader_input() -> None:
    ds, model = _dataset(n_per_class=40)
    plain = ListDataset(ds)
    a = SubsetLoader(
        ds, strategy="craig", fraction=0.25, select_every=1, model=model, batch_size=8, seed=2
    )
    b = SubsetLoader(
        torch.utils.data.DataLoader(plain, batch_size=8, shuffle=True),
        strategy="craig",
        fraction=0.25,
        select_every=1,
        model=model,
        batch_size=8,
        seed=2,
    )
    for loader in (a, b):
        _epoch(loader)
        ids, _, _ = _epoch(loader)
        np.testing.assert_array_equal(np.sort(ids), loader.indices)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-6)


def test_bad_arguments() -> None:
    ds, model = _dataset(n_per_class=10)
    with pytest.raises(ValueError, match="needs model"):
        SubsetLoader(ds, strategy="gradmatch", fraction=0.1, select_every=1, batch_size=4)
    with pytest.raises(ValueError, match="unknown strategy"):
        SubsetLoader(
            ds, strategy="glister", fraction=0.1, select_every=1, batch_size=4, model=model
        )
    with pytest.raises(ValueError, match="fraction"):
        SubsetLoader(ds, strategy="random", fraction=1.5, select_every=1, batch_size=4)
    assert SubsetLoader(
        ds, strategy="gradmatch_pb", fraction=0.5, select_every=1, batch_size=4, model=model
    ).per_batch


def test_importing_hpd_subset_does_not_import_torch() -> None:
    code = "import sys, hpd, hpd.subset; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- ridge (GRAD-MATCH's regularisation) -------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "solver"),
    [
        (dict(fraction=0.1), "nnls_omp"),  # 10 of each 100-sample class: whole classes
        (dict(fraction=0.5, max_block=32), "nnls_omp_blocks"),  # 50 per class: blocks of 64
        (dict(fraction=0.125, per_batch=True), "nnls_omp"),  # batches: whole-set OMP
    ],
    ids=["whole classes", "blocked classes", "per batch"],
)
def test_ridge_reaches_every_gradmatch_selection(kw: dict, solver: str, solver_calls) -> None:
    """``SubsetLoader(ridge=)`` reaches the solver of each GRAD-MATCH path (and not the random
    first round, which would refuse it), and changes the selection's weights."""
    ds, model = _dataset()
    common = dict(strategy="gradmatch", select_every=1, model=model, batch_size=20, seed=5)
    ridge = 1e4
    runs = {}
    for r in (0.0, ridge):
        loader = SubsetLoader(ds, ridge=r, **common, **kw)
        _epoch(loader)  # epoch 0: stratified random, no solver
        assert solver_calls == []
        _epoch(loader)
        assert {name for name, _ in solver_calls} == {solver}
        assert {rr for _, rr in solver_calls} == {r}
        solver_calls.clear()
        runs[r] = (loader.indices, loader.weights)
    assert len(runs[ridge][0]) == len(runs[0.0][0])
    assert not np.allclose(runs[ridge][1], runs[0.0][1])
    assert (runs[ridge][1] >= 0).all()
    if not kw.get("per_batch"):  # exactly select()'s result, as without a ridge
        feats = last_layer_features(model, ds)
        want, w = select(
            "gradmatch", feats, kw["fraction"], labels=feats.labels, seed=_seed(5, 1, 1),
            max_block=kw.get("max_block", 256), ridge=ridge,
        )  # fmt: skip
        np.testing.assert_array_equal(runs[ridge][0], want)
        np.testing.assert_allclose(runs[ridge][1], w * len(w) / w.sum(), rtol=1e-5)


def test_ridge_bad_arguments() -> None:
    ds, model = _dataset(n_per_class=10)
    base = dict(fraction=0.5, select_every=1, batch_size=4, model=model)
    for bad in (-0.5, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="ridge must be"):
            SubsetLoader(ds, strategy="gradmatch", ridge=bad, **base)
    for strategy in ("random", "craig", "none"):
        with pytest.raises(ValueError, match=f"ridge.*{strategy!r}"):
            SubsetLoader(ds, strategy=strategy, ridge=1.0, **base)
        assert SubsetLoader(ds, strategy=strategy, ridge=0.0, **base).ridge == 0.0
    assert SubsetLoader(ds, strategy="gradmatch_pb", ridge=2, **base).ridge == 2.0


def test_subset_study_passes_lam_as_ridge_to_gradmatch_only() -> None:
    """The study's trial hands its sampled ``lam`` to GRAD-MATCH's loader, and to nothing else
    (the full-data retraining keeps ``lam`` in its params but runs ``strategy = "none"``)."""
    from examples.subset_study.train import _gradmatch_ridge

    params = {"lr": 0.01, "lam": 0.37}
    assert _gradmatch_ridge({"strategy": "gradmatch", "per_batch": True}, params) == {"ridge": 0.37}
    assert _gradmatch_ridge({"strategy": "gradmatch_pb"}, params) == {"ridge": 0.37}
    for subset in ({"strategy": "none"}, {"strategy": "random"}, {}):
        assert _gradmatch_ridge(subset, params) == {}
    assert _gradmatch_ridge({"strategy": "gradmatch"}, {"lr": 0.01}) == {}
