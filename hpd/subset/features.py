"""Closed-form last-layer gradient features from one inference pass.

Owns ``last_layer_features`` and ``find_head``. For a head ``z = W h + b`` and cross-entropy,
``dl/db = r`` and ``dl/dW = r h^T`` with ``r = softmax(z) - e_y`` (``e_y`` smoothed when
``label_smoothing`` > 0). The pass runs under ``no_grad`` in eval mode (every module's own
training flag is restored afterwards), batch by batch on the model's device, with ``h`` caught
by a forward hook on the head, so any model whose last ``nn.Linear`` is the classifier works.
The result is a factored ``GradFeatures`` (``R`` [N, C], ``H`` [N, D], float32, on that device).

Must never: keep autograd graphs, change the model's parameters or modes, move the model,
or read the dataset in any order but its index order.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from hpd.subset.data import sequential_batches, unwrap
from hpd.subset.kernels import GradFeatures

Tensor = torch.Tensor


def find_head(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` in module order (its classifier, for usual models)."""
    head = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            head = m
    if head is None:
        raise ValueError("model has no nn.Linear; pass head= explicitly")
    return head


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _residuals(z: Tensor, y: Tensor, label_smoothing: float) -> Tensor:
    r = torch.softmax(z.float(), dim=1)
    C = r.shape[1]
    if label_smoothing > 0:
        r = r - label_smoothing / C
        r[torch.arange(r.shape[0], device=r.device), y] -= 1.0 - label_smoothing
    else:
        r[torch.arange(r.shape[0], device=r.device), y] -= 1.0
    return r


def last_layer_features(
    model: nn.Module,
    dataset_or_loader: Any,
    *,
    head: nn.Linear | None = None,
    device: torch.device | str | None = None,
    batch_size: int = 1024,
    label_smoothing: float = 0.0,
    amp: bool = False,
) -> GradFeatures:
    """Per-sample last-layer cross-entropy gradients of ``model`` on every sample, factored.

    ``dataset_or_loader``: a map-style dataset yielding ``(x, y)`` or a DataLoader over one (its
    sampler is ignored: the dataset is read in index order with the loader's collate_fn and
    workers, so row i is sample i). ``device``: where inputs go (default: the model's).
    ``amp``: bfloat16 autocast on CUDA (features are still stored in float32).
    """
    head = find_head(model) if head is None else head
    dev = torch.device(device) if device is not None else model_device(model)
    dataset, _, _ = unwrap(dataset_or_loader)
    n = len(dataset)
    if isinstance(dataset_or_loader, torch.utils.data.DataLoader) and dataset_or_loader.batch_size:
        batch_size = int(dataset_or_loader.batch_size)
    caught: dict[str, Tensor] = {}

    def hook(_m: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        caught["h"], caught["z"] = inputs[0], output

    modes = [(m, m.training) for m in model.modules()]
    handle = head.register_forward_hook(hook)
    R = H = None
    labels = torch.empty(n, dtype=torch.long, device=dev)
    autocast: Any = contextlib.nullcontext()
    if amp and dev.type == "cuda":
        autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    try:
        model.eval()
        with torch.no_grad(), autocast:
            for start, batch in sequential_batches(dataset_or_loader, batch_size):
                x, y = batch[0], batch[1]
                x = x.to(dev, non_blocking=True)
                y = torch.as_tensor(y).to(dev, non_blocking=True).long().reshape(-1)
                model(x)
                h, z = caught["h"], caught["z"]
                if h.ndim != 2 or z.ndim != 2:
                    raise ValueError(
                        f"head input/output must be 2-D, got {tuple(h.shape)} -> {tuple(z.shape)}"
                    )
                if R is None or H is None:
                    R = torch.empty((n, z.shape[1]), dtype=torch.float32, device=dev)
                    H = torch.empty((n, h.shape[1]), dtype=torch.float32, device=dev)
                end = start + y.shape[0]
                R[start:end] = _residuals(z, y, label_smoothing)
                H[start:end] = h.float()
                labels[start:end] = y
    finally:
        handle.remove()
        for m, training in modes:
            m.training = training
    if R is None or H is None:
        C, D = head.out_features, head.in_features
        R = torch.zeros((0, C), device=dev)
        H = torch.zeros((0, D), device=dev)
    return GradFeatures(R, H, labels, bias=head.bias is not None)
