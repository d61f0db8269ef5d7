"""``SubsetLoader``: weighted mini-batches of an adaptively re-selected data subset.

Owns epoch bookkeeping (which selection round an epoch belongs to), the per-round selection
(round 0 is stratified random; later rounds run the configured strategy on the current model's
last-layer gradients), per-epoch shuffling, weight normalisation and timing records.

Invariants: indices always refer to the dataset (selection reads the dataset in index order;
weights live in a dense length-N vector indexed by dataset index, so no sampler order can
misalign them); weights are normalised so that their mean over the subset is 1 (a weighted-mean
loss is then on the scale of full-data training); selection runs in eval mode and restores
every module's mode. ``timings`` is updated after each selection and each completed epoch, and
``on_timing(timings.as_dict())`` is called after each completed epoch.

Must never: train, step optimisers or schedulers, import anything from the daemon, or keep a
model reference beyond what the caller passed in.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hpd.subset.data import dataset_labels, fetch_batches, unwrap
from hpd.subset.features import last_layer_features, model_device
from hpd.subset.strategies import (
    STRATEGIES,
    budget,
    check_ridge_for,
    select,
    select_batches,
)

Tensor = torch.Tensor


@dataclass
class SubsetTimings:
    """What the loader's subset costs. Seconds are wall-clock, CPU or accelerator alike."""

    strategy: str
    fraction: float
    selection_seconds: float = 0.0  # last selection (inference pass + solver)
    selection_total_seconds: float = 0.0
    features_seconds: float = 0.0  # inference pass of the last selection
    epoch_seconds: float = 0.0  # last completed epoch, selection excluded
    selections: int = 0
    subset_size: int = 0
    epochs: int = 0  # completed epochs
    subset_hash: str = ""  # sha1 of the current subset's indices (first 12 hex digits)

    def as_dict(self) -> dict[str, str | float | int]:
        """The JSON-able record sent to ``on_timing`` (and on to the daemon)."""
        return {
            "strategy": self.strategy,
            "fraction": self.fraction,
            "selection_s": self.selection_seconds,
            "selection_total_s": self.selection_total_seconds,
            "epoch_s": self.epoch_seconds,
            "subset_size": self.subset_size,
            "selections": self.selections,
        }


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


class SubsetLoader:
    """Iterate ``(x, y, w)`` batches of the current subset, one epoch per ``iter()``.

    ``strategy``: ``random``, ``gradmatch`` or ``craig`` (``gradmatch_pb`` = gradmatch with
    ``per_batch=True``). ``fraction``: subset size as a fraction of the dataset.
    ``select_every``: re-select at every epoch that is a multiple of it (epoch 0 is stratified
    random; gradient strategies need ``model``). ``per_batch``: choose whole mini-batches of a
    seeded random partition by their summed gradients and yield exactly those batches.
    ``device``: where the selection's inference pass runs (default: the model's device);
    yielded batches are not moved. ``amp``: bfloat16 autocast for that pass on CUDA;
    ``label_smoothing``: the training loss's, so the gradients are the trained ones.
    ``pool`` (per-batch mode): run the inference pass only on ``pool * k`` random candidate
    batches (k = the batches chosen) and match their gradient sum, not the full one; it cuts
    the selection's inference cost by ``pool * fraction`` (a cost/quality knob; default: all).
    ``tol``, ``fill_weight``, ``max_block``: passed to ``select`` (GRAD-MATCH's stop and fill;
    the block size of CRAIG and GRAD-MATCH on large classes, see ``hpd.subset.blocks``).
    ``ridge``: GRAD-MATCH's regularisation coefficient (CORDS's ``lam``), passed to its
    selections (not to the random first round): ``ridge * ||w||^2`` is added to OMP-NNLS's
    objective, in the units of the gradient Gram (``||g_i||^2`` of the last-layer gradients
    per sample, or of the batches' gradient sums with ``per_batch``). A finite number >= 0;
    the other strategies (``none`` included) refuse a nonzero one.
    The epoch counter advances by one per ``iter()`` unless ``set_epoch`` is called.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        strategy: str,
        fraction: float,
        select_every: int,
        model: nn.Module | None = None,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        per_batch: bool = False,
        device: torch.device | str | None = None,
        num_workers: int = 0,
        on_timing: Callable[[dict[str, str | float | int]], None] | None = None,
        head: nn.Linear | None = None,
        feature_batch_size: int = 1024,
        collate_fn: Callable[..., Any] | None = None,
        tol: float = 1e-4,
        amp: bool = False,
        label_smoothing: float = 0.0,
        pool: float | None = None,
        fill_weight: float = 1.0,
        max_block: int = 256,
        ridge: float = 0.0,
    ) -> None:
        # before "none" becomes "random", so the error names what the caller asked for
        ridge = check_ridge_for(strategy, ridge, gradmatch=("gradmatch", "gradmatch_pb"))
        if strategy == "gradmatch_pb":
            strategy, per_batch = "gradmatch", True
        # "none" (the spec's default): every sample at weight 1, so one training script serves
        # full-data and subset scenarios alike, with the same timings reported.
        full_data = strategy == "none"
        if full_data:
            strategy, fraction, per_batch = "random", 1.0, False
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        if strategy != "random" and model is None:
            raise ValueError(f"strategy {strategy!r} needs model=")
        if select_every < 1 or batch_size < 1:
            raise ValueError("select_every and batch_size must be >= 1")
        budget(fraction, 1)  # validates the fraction
        ds, dl_collate, dl_workers = unwrap(dataset)
        self.dataset = ds
        self.collate_fn = collate_fn if collate_fn is not None else dl_collate
        self.num_workers = num_workers or dl_workers
        self.strategy = strategy
        self.fraction = float(fraction)
        self.select_every = int(select_every)
        self.model, self.head, self.device = model, head, device
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.per_batch = per_batch
        self.feature_batch_size = feature_batch_size
        self.tol = tol
        self.amp = amp
        self.label_smoothing = label_smoothing
        self.pool = pool
        self.fill_weight = fill_weight
        self.max_block = max_block
        self.ridge = ridge
        self.on_timing = on_timing
        self.timings = SubsetTimings(
            strategy="none" if full_data else strategy, fraction=self.fraction
        )
        self._n = len(ds)
        self._epoch = 0
        self._round = -1
        self._labels: npt.NDArray[np.int64] | None = None
        self._indices = np.zeros(0, dtype=np.int64)
        self._batches: list[npt.NDArray[np.int64]] = []
        self._w_full = torch.zeros(self._n, dtype=torch.float32)
        self._w_dev: dict[torch.device, Tensor] = {}

    # -- public state -------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch the next ``iter()`` will run."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    @property
    def indices(self) -> npt.NDArray[np.int64]:
        """Dataset indices of the current subset, sorted (empty before the first selection)."""
        return self._indices.copy()

    @property
    def weights(self) -> npt.NDArray[np.float64]:
        """Normalised weights aligned with ``indices`` (mean 1)."""
        return self._w_full[torch.from_numpy(self._indices)].double().numpy()

    @property
    def batches(self) -> list[npt.NDArray[np.int64]]:
        """Per-batch mode: the chosen batches (dataset indices), in partition order."""
        return [b.copy() for b in self._batches]

    def __len__(self) -> int:
        if self.per_batch:
            return budget(self.fraction, math.ceil(self._n / self.batch_size))
        return math.ceil(budget(self.fraction, self._n) / self.batch_size)

    # -- selection ----------------------------------------------------------------------
    def reselect(self) -> None:
        """Run the configured strategy now (e.g. at an ASHA rung boundary)."""
        self._select(self._epoch // self.select_every, force_strategy=True)

    def _dataset_labels(self) -> npt.NDArray[np.int64]:
        if self._labels is None:
            self._labels = dataset_labels(self.dataset)
        return self._labels

    def _select(self, rnd: int, *, force_strategy: bool = False) -> None:
        t0 = time.perf_counter()
        seed = _seed(self.seed, rnd, self.timings.selections)
        use_model = self.strategy != "random" and (rnd > 0 or force_strategy)
        self.timings.features_seconds = 0.0
        w_full = torch.zeros(self._n, dtype=torch.float64)
        if self.per_batch:
            idx = self._select_batches(seed, use_model, w_full)
        else:
            feats = self._features(None) if use_model else None
            labels = feats.labels if feats is not None else self._dataset_labels()
            grads: Any = feats if feats is not None else self._n
            strategy = self.strategy if use_model else "random"
            idx, w = select(
                strategy, grads, self.fraction, labels=labels, seed=seed, tol=self.tol,
                fill_weight=self.fill_weight, max_block=self.max_block,
                ridge=self.ridge if strategy == "gradmatch" else 0.0,
            )  # fmt: skip
            w_full[torch.from_numpy(idx)] = torch.from_numpy(w)
        total = float(w_full.sum())
        if total > 0:
            w_full *= len(idx) / total
        self._indices = idx.astype(np.int64)
        self._w_full = w_full.float()
        self._w_dev = {}
        self._round = rnd
        dt = time.perf_counter() - t0
        tm = self.timings
        tm.selection_seconds, tm.selection_total_seconds = dt, tm.selection_total_seconds + dt
        tm.selections += 1
        tm.subset_size = len(idx)
        tm.subset_hash = hashlib.sha1(self._indices.tobytes()).hexdigest()[:12]

    def _select_batches(self, seed: int, use_model: bool, w_full: Tensor) -> npt.NDArray[np.int64]:
        """Per-batch mode: partition, (pool,) select whole batches; fills ``w_full``."""
        rng = np.random.default_rng(seed)
        perm = rng.permutation(self._n)
        parts = [perm[s : s + self.batch_size] for s in range(0, self._n, self.batch_size)]
        k = budget(self.fraction, len(parts))
        cand = np.arange(len(parts))
        if use_model and self.pool is not None and self.pool * k < len(parts):
            size = max(k, math.ceil(self.pool * k))
            cand = np.sort(rng.choice(len(parts), size=size, replace=False))
        frac = k / len(cand)
        if use_model:
            if len(cand) == len(parts):
                feats, local = self._features(None), parts
            else:  # features of the pooled batches only; batches as rows of those features
                feats = self._features(np.concatenate([parts[c] for c in cand]))
                ends = np.cumsum([len(parts[c]) for c in cand])
                local = [np.arange(e - len(parts[c]), e) for c, e in zip(cand, ends, strict=True)]
            pos, w = select_batches(
                self.strategy, feats, local, frac, seed=seed, tol=self.tol,
                fill_weight=self.fill_weight, ridge=self.ridge,
            )  # fmt: skip
        else:
            pos, w = select_batches("random", None, [parts[c] for c in cand], frac, seed=seed)
        self._batches = [parts[cand[p]] for p in pos]
        for b, wb in zip(self._batches, w, strict=True):
            w_full[torch.from_numpy(b)] = float(wb)
        if not self._batches:
            return np.zeros(0, np.int64)
        return np.sort(np.concatenate(self._batches))

    def _features(self, indices: npt.NDArray[np.int64] | None) -> Any:
        """Last-layer gradient features of all samples, or of ``indices`` (rows in that order)."""
        assert self.model is not None
        t0 = time.perf_counter()
        feats = last_layer_features(
            self.model,
            self._feature_source(indices),
            head=self.head,
            device=self.device,
            batch_size=self.feature_batch_size,
            label_smoothing=self.label_smoothing,
            amp=self.amp,
        )
        self.timings.features_seconds = time.perf_counter() - t0
        return feats

    def _feature_source(self, indices: npt.NDArray[np.int64] | None = None) -> Any:
        ds: Any = self.dataset
        if indices is not None:
            if isinstance(ds, torch.utils.data.TensorDataset):
                idx = torch.from_numpy(indices)
                ds = torch.utils.data.TensorDataset(*(t[idx.to(t.device)] for t in ds.tensors))
            else:
                ds = torch.utils.data.Subset(ds, indices.tolist())
        if self.collate_fn is None and self.num_workers == 0:
            return ds
        return torch.utils.data.DataLoader(
            ds,
            batch_size=self.feature_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
        )

    # -- iteration ----------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[npt.NDArray[np.int64]]:
        rng = np.random.default_rng(_seed(self.seed, epoch, 0x5EED))
        if self.per_batch:
            order = (
                rng.permutation(len(self._batches)) if self.shuffle else range(len(self._batches))
            )
            return [self._batches[i] for i in order]
        idx = rng.permutation(self._indices) if self.shuffle else self._indices
        return [idx[s : s + self.batch_size] for s in range(0, len(idx), self.batch_size)]

    def _batch_weights(self, ids: npt.NDArray[np.int64], device: torch.device) -> Tensor:
        if device not in self._w_dev:
            self._w_dev[device] = self._w_full.to(device)
        return self._w_dev[device][torch.as_tensor(ids, device=device)]

    def __iter__(self) -> Iterator[tuple[Any, Any, Tensor]]:
        epoch = self._epoch
        self._epoch += 1
        rnd = epoch // self.select_every
        if rnd != self._round:
            self._select(rnd)
        batches = self._epoch_batches(epoch)
        t0 = time.perf_counter()
        stream = fetch_batches(
            self.dataset, batches, num_workers=self.num_workers, collate_fn=self.collate_fn
        )
        dev = torch.device("cpu")
        for ids, batch in zip(batches, stream, strict=True):
            x, y = batch[0], batch[1]
            dev = y.device if isinstance(y, Tensor) else torch.device("cpu")
            yield x, y, self._batch_weights(ids, dev)
        if self.model is not None:
            dev = model_device(self.model)
        if dev.type == "cuda":  # the consumer's last steps are queued, not done
            torch.cuda.synchronize(dev)
        self.timings.epoch_seconds = time.perf_counter() - t0
        self.timings.epochs += 1
        if self.on_timing is not None:
            self.on_timing(self.timings.as_dict())
