"""The study's data: train / validation / test splits as in-memory tensors.

Owns ``load_splits`` and ``Splits``. Fashion-MNIST (the default) comes from its raw IDX files
through ``examples.fashion_mnist.data.load_fashion_mnist`` (numpy only, no network); CIFAR-10,
the seeds' dataset, through torchvision, and only when torchvision is importable and the data
is already on disk (``download=False``): otherwise a clear error says what is missing.

Splits: the validation set is held out of the *training* split with a fixed permutation
(seed 0, the same for every trial and scenario), so ASHA ranks every configuration on the same
samples and the test split is touched only for the final metric. ``train_samples`` caps the
training set (a fixed, class-mixed prefix of that permutation) for small runs; ``val_samples``
and ``test_samples`` cap the other two likewise. Images are normalised with the dataset's
usual per-channel mean and standard deviation and stored as float32 ``TensorDataset``s, which
``hpd.subset`` slices directly (no per-item Python); on CUDA they live on the GPU.

Must never: download anything, shuffle differently from call to call, or let a validation or
test sample into the training set.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import TensorDataset

from examples.fashion_mnist.data import load_fashion_mnist

DATASETS = ("fashion-mnist", "cifar10")

# Per-channel (mean, std) of each training split, the constants everyone uses.
_STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

_REPO_SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass(frozen=True)
class Splits:
    """Train / validation / test tensors of one dataset, and its shape facts."""

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    in_channels: int
    num_classes: int
    image_size: int

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


Images = npt.NDArray[np.uint8]
Labels = npt.NDArray[np.int64]
Raw = tuple[Images, Labels, Images, Labels]  # train images, labels, test images, labels


# The decoded files, per warm worker: a run.py warm-up trial pays for them (and for importing
# torch) once, so the first timed trial on each slot does not.
@functools.lru_cache(maxsize=1)
def _raw(name: str, root: str | None) -> Raw:
    return _raw_fashion_mnist(root) if name == "fashion-mnist" else _raw_cifar10(root)


def _raw_fashion_mnist(root: str | None) -> Raw:
    x_tr, y_tr = load_fashion_mnist(root, "train")
    x_te, y_te = load_fashion_mnist(root, "test")
    return x_tr[:, None], y_tr, x_te[:, None], y_te  # [N, 1, 28, 28]


def _raw_cifar10(root: str | None) -> Raw:
    try:
        from torchvision.datasets import CIFAR10  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise RuntimeError(
            "dataset 'cifar10' needs torchvision (pip install torchvision matching your torch); "
            "or use STUDY_DATASET=fashion-mnist"
        ) from None
    base = Path(root or os.environ.get("CIFAR10_ROOT") or _REPO_SHARED / "cifar10")
    try:
        tr = CIFAR10(str(base), train=True, download=False)
        te = CIFAR10(str(base), train=False, download=False)
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise RuntimeError(
            f"CIFAR-10 not found under {base} ({exc}); put the python version "
            "(cifar-10-batches-py/) there, or set STUDY_DATA_ROOT"
        ) from None
    # torchvision keeps HWC uint8 arrays; the model wants CHW.
    x_tr = np.ascontiguousarray(np.asarray(tr.data).transpose(0, 3, 1, 2))
    x_te = np.ascontiguousarray(np.asarray(te.data).transpose(0, 3, 1, 2))
    return x_tr, np.asarray(tr.targets, np.int64), x_te, np.asarray(te.targets, np.int64)


def _tensors(
    x: npt.NDArray[np.uint8], y: npt.NDArray[np.int64], name: str, device: torch.device
) -> TensorDataset:
    mean, std = _STATS[name]
    # A fresh tensor with the default strides: from_numpy would keep numpy's strides, and for
    # a 1-channel image those can be (784, 1, 28, 1), a layout that crashes torch 2.13's CPU
    # conv backward with heap corruption ("free(): invalid next size").
    xt = torch.empty(x.shape, dtype=torch.float32).copy_(torch.from_numpy(x)).div_(255.0)
    xt = (xt - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return TensorDataset(xt.to(device), torch.from_numpy(y).to(device))


def _cap(n: int, cap: int | None) -> int:
    return n if cap is None or cap <= 0 else min(n, cap)


@functools.lru_cache(maxsize=2)  # a warm worker reuses the tensors across segments and trials
def load_splits(
    name: str = "fashion-mnist",
    *,
    train_samples: int | None = None,
    val_samples: int = 5000,
    test_samples: int | None = None,
    device: str = "cpu",
    root: str | None = None,
) -> Splits:
    """The dataset's splits; ``None`` or 0 for a cap means all samples.

    ``val_samples`` are held out of the training split first, then ``train_samples`` caps what
    is left. Cached per argument tuple, so treat the tensors as read-only.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    x_tr, y_tr, x_te, y_te = _raw(name, root)
    n_val = _cap(len(y_tr), val_samples)
    if n_val >= len(y_tr):
        raise ValueError(f"val_samples={val_samples} leaves no training data ({len(y_tr)} in all)")
    # One fixed permutation (seed 0): every trial of every scenario sees the same split.
    perm = np.random.default_rng(0).permutation(len(y_tr))
    val_idx = perm[:n_val]
    train_idx = perm[n_val : n_val + _cap(len(y_tr) - n_val, train_samples)]
    test_idx = np.random.default_rng(1).permutation(len(y_te))[: _cap(len(y_te), test_samples)]
    dev = torch.device(device)
    return Splits(
        name=name,
        train=_tensors(x_tr[np.sort(train_idx)], y_tr[np.sort(train_idx)], name, dev),
        val=_tensors(x_tr[np.sort(val_idx)], y_tr[np.sort(val_idx)], name, dev),
        test=_tensors(x_te[np.sort(test_idx)], y_te[np.sort(test_idx)], name, dev),
        in_channels=int(x_tr.shape[1]),
        num_classes=int(max(y_tr.max(), y_te.max()) + 1),
        image_size=int(x_tr.shape[2]),
    )
