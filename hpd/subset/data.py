"""Dataset access for the subset loaders: index-exact batches, in the order asked for.

Owns ``sequential_batches`` (the whole dataset in index order, for the gradient pass),
``fetch_batches`` (given lists of dataset indices, yield those samples, batch by batch, in that
order) and ``dataset_labels``. A ``TensorDataset`` is sliced directly (no per-item Python);
anything else goes through a ``DataLoader`` with an explicit ``batch_sampler``, so that every
yielded row is known to be ``dataset[i]`` for a known ``i``, whatever sampler the caller uses.

Must never: shuffle on its own, or trust a caller's DataLoader sampler order (a DataLoader is
re-read sequentially from its ``dataset``; the CORDS index bug came from exactly that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

Tensor = torch.Tensor


def unwrap(data: Any) -> tuple[Any, Callable[..., Any] | None, int]:
    """``(dataset, collate_fn, num_workers)`` of a dataset or DataLoader."""
    if isinstance(data, DataLoader):
        if isinstance(data.dataset, IterableDataset):
            raise TypeError(
                "an IterableDataset has no indices; subset selection needs a map-style dataset"
            )
        collate: Callable[..., Any] | None = data.collate_fn
        if collate is torch.utils.data.default_collate:
            collate = None  # lets a TensorDataset be sliced directly
        return data.dataset, collate, int(data.num_workers)
    return data, None, 0


def _as_index_batches(batches: Sequence[Any]) -> list[list[int]]:
    return [np.asarray(b, dtype=np.int64).reshape(-1).tolist() for b in batches]


def fetch_batches(
    dataset: Any,
    batches: Sequence[Any],
    *,
    num_workers: int = 0,
    collate_fn: Callable[..., Any] | None = None,
    pin_memory: bool = False,
) -> Iterator[Any]:
    """Yield ``collate([dataset[i] for i in batch])`` for each batch of indices, in order."""
    if isinstance(dataset, TensorDataset) and num_workers == 0 and collate_fn is None:
        tensors = dataset.tensors
        for b in batches:
            idx = torch.as_tensor(np.asarray(b, dtype=np.int64), device=tensors[0].device)
            yield tuple(t[idx] if t.device == idx.device else t[idx.to(t.device)] for t in tensors)
        return
    kwargs: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
    if collate_fn is not None:
        kwargs["collate_fn"] = collate_fn
    yield from DataLoader(dataset, batch_sampler=_as_index_batches(batches), **kwargs)


def sequential_batches(data: Any, batch_size: int) -> Iterator[tuple[int, Any]]:
    """``(start, batch)`` over the whole dataset (or a DataLoader's dataset) in index order."""
    dataset, collate_fn, num_workers = unwrap(data)
    n = len(dataset)
    starts = range(0, n, batch_size)
    if isinstance(dataset, TensorDataset) and num_workers == 0 and collate_fn is None:
        for s in starts:  # views of contiguous rows: no gather, no copy
            yield s, tuple(t[s : s + batch_size] for t in dataset.tensors)
        return
    batches = [np.arange(s, min(n, s + batch_size)) for s in starts]
    yield from zip(
        starts,
        fetch_batches(dataset, batches, num_workers=num_workers, collate_fn=collate_fn),
        strict=True,
    )


def dataset_labels(data: Any, batch_size: int = 4096) -> npt.NDArray[np.int64]:
    """The label of every sample, in index order (``targets``, a TensorDataset's second tensor,
    or else one pass over the dataset)."""
    dataset, _, _ = unwrap(data)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1].detach().cpu().numpy().astype(np.int64).reshape(-1)
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        t = targets.detach().cpu().numpy() if isinstance(targets, Tensor) else np.asarray(targets)
        return t.astype(np.int64).reshape(-1)
    parts = [
        np.asarray(torch.as_tensor(batch[1]).cpu(), dtype=np.int64).reshape(-1)
        for _, batch in sequential_batches(data, batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
