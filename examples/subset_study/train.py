"""The study's trial: ResNet-18 trained with RMSprop + StepLR on the spec's [subset].

Owns ``train(ctx)`` (the hpd entrypoint ``examples.subset_study.train:train``), ``Settings``
(the run's fixed facts, from the spec's ``[env]`` table) and the epoch loop. One script serves
all four scenarios and the full-data retraining: ``ctx.subset_loader`` reads the spec's
``[subset]`` (``none`` = every sample at weight 1, ``random``, ``gradmatch``) and yields
``(x, y, w)`` batches; the loss is the ``w``-weighted mean, as GRAD-MATCH prescribes.

The searched hyperparameters (``ctx.params``) are the seeds' space: ``lr`` (RMSprop), ``momentum``
(RMSprop's momentum), ``weight_decay``, ``step_size`` (StepLR, gamma 0.1, stepped per epoch)
and, for GRAD-MATCH, ``lam`` (its regularisation coefficient). When the spec's strategy is
GRAD-MATCH, ``lam`` goes straight to the loader as ``SubsetLoader(ridge=lam)``: every OMP-NNLS
selection minimises ``||sum_i w_i g_i - G||^2 + lam ||w||^2`` (w >= 0), as in CORDS. ``ridge`` is
in the units of the gradient Gram matrix (those of ``||g_i||^2``; per batch, of the batches'
gradient sums), which need not match CORDS's gradient scaling, so the same ``lam`` may weigh
more or less here than there. Other strategies (the full-data retraining included) ignore it.

Settings (``[env]``, so the four specs state them; all optional):
``STUDY_DATASET`` fashion-mnist | cifar10, ``STUDY_WIDTH`` (ResNet width, 64 = the paper's),
``STUDY_TRAIN_SAMPLES`` / ``STUDY_VAL_SAMPLES`` / ``STUDY_TEST_SAMPLES`` (caps; 0 = all),
``STUDY_BATCH_SIZE``, ``STUDY_DEVICE`` auto | cpu | cuda, ``STUDY_THREADS`` (torch threads on the
CPU; 1 because each CPU slot is one core), ``STUDY_AMP`` (bf16 autocast on CUDA, default on),
``STUDY_DATA_ROOT``, ``STUDY_CHECKPOINT_EVERY`` (epochs between mid-segment checkpoints).

Metrics: ``val_acc`` (the search metric) and ``train_loss`` every epoch; ``test_acc`` at the
last epoch of each segment only (a rung's epoch, or the retrain's final epoch), because on a
CPU the test pass costs as much as a fifth of an epoch and nothing ranks on it.

Must never: select on the test set, or train on a validation sample.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from examples.subset_study.data import Splits, load_splits
from examples.subset_study.model import ResNet18
from hpd.trial import TrialContext, context

Tensor = torch.Tensor


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    return int(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    """What is fixed for a whole search (not searched): data, model size, device."""

    dataset: str = "fashion-mnist"
    width: int = 64
    train_samples: int = 0  # 0 = all
    val_samples: int = 5000
    test_samples: int = 0
    batch_size: int = 128
    device: str = "auto"
    threads: int = 1
    amp: bool = True
    data_root: str | None = None
    checkpoint_every: int = 5

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        d = cls()
        return cls(
            dataset=env.get("STUDY_DATASET", d.dataset) or d.dataset,
            width=_int_env(env, "STUDY_WIDTH", d.width),
            train_samples=_int_env(env, "STUDY_TRAIN_SAMPLES", d.train_samples),
            val_samples=_int_env(env, "STUDY_VAL_SAMPLES", d.val_samples),
            test_samples=_int_env(env, "STUDY_TEST_SAMPLES", d.test_samples),
            batch_size=_int_env(env, "STUDY_BATCH_SIZE", d.batch_size),
            device=env.get("STUDY_DEVICE", d.device) or d.device,
            threads=_int_env(env, "STUDY_THREADS", d.threads),
            amp=env.get("STUDY_AMP", "1").strip().lower() not in ("0", "false", "no", "off"),
            data_root=env.get("STUDY_DATA_ROOT") or None,
            checkpoint_every=max(1, _int_env(env, "STUDY_CHECKPOINT_EVERY", d.checkpoint_every)),
        )

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("STUDY_DEVICE=cuda but torch sees no CUDA device")
        return torch.device(self.device)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    # bf16 needs no loss scaling; on the CPU autocast would only slow the convs down.
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def augment(x: Tensor) -> Tensor:
    """CIFAR's standard augmentation on a batch: random 4-pixel-padded crop + horizontal flip,
    per sample, on the batch's device (no per-item Python)."""
    n, c, h, w = x.shape
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), device=x.device)
    dx = torch.randint(0, 9, (n,), device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :]
    ns = torch.arange(n, device=x.device)[:, None, None, None]
    cs = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[ns, cs, rows, cols]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, data: TensorDataset, device: torch.device, amp: bool, batch: int = 1024
) -> float:
    """Top-1 accuracy on a whole split (eval mode; the caller's mode is restored)."""
    was_training = model.training
    model.eval()
    x_all, y_all = data.tensors
    correct = 0
    with _autocast(device, amp):
        for s in range(0, len(y_all), batch):
            xb = x_all[s : s + batch].to(device, non_blocking=True)
            yb = y_all[s : s + batch].to(device, non_blocking=True)
            correct += int((model(xb).argmax(1) == yb).sum())
    model.train(was_training)
    return correct / max(1, len(y_all))


def _splits(settings: Settings, device: torch.device) -> Splits:
    return load_splits(
        settings.dataset,
        train_samples=settings.train_samples or None,
        val_samples=settings.val_samples,
        test_samples=settings.test_samples or None,
        device=str(device),
        root=settings.data_root,
    )


def _gradmatch_ridge(subset: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, float]:
    """``{"ridge": lam}`` for a GRAD-MATCH subset with a sampled ``lam``, else nothing: the
    loader refuses a ridge for other strategies, and the full-data retraining keeps ``lam``
    in its params while running ``strategy = "none"``."""
    if subset.get("strategy") in ("gradmatch", "gradmatch_pb") and "lam" in params:
        return {"ridge": float(params["lam"])}
    return {}


def train(ctx: TrialContext) -> None:
    settings = Settings.from_env(os.environ)
    device = settings.torch_device()
    if device.type == "cpu":
        # One CPU slot = one core: more threads per trial would only fight the other slot.
        torch.set_num_threads(max(1, settings.threads))
    torch.manual_seed(ctx.seed)  # spec seed + trial index: scenarios share inits per config
    splits = _splits(settings, device)
    p = ctx.params

    model = ResNet18(splits.in_channels, splits.num_classes, settings.width).to(device)
    if device.type == "cuda":
        # Tensor-core convs want NHWC; Module.to's stubs lack memory_format, the call has it.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.RMSprop(
        model.parameters(),
        lr=float(p["lr"]),
        momentum=float(p.get("momentum", 0.0)),
        weight_decay=float(p.get("weight_decay", 0.0)),
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(p.get("step_size", 50)), gamma=0.1)
    state = ctx.restore()
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])

    use_amp = settings.amp and device.type == "cuda"
    loader = ctx.subset_loader(
        splits.train,
        model=model,
        head=model.fc,
        batch_size=settings.batch_size,
        amp=use_amp,
        **_gradmatch_ridge(ctx.subset, p),
    )
    loader.set_epoch(ctx.start_epoch)  # selection rounds continue where the checkpoint left off
    for epoch in ctx.epochs():
        model.train()
        total, seen = torch.zeros((), device=device), 0
        for xb, yb, wb in loader:
            if splits.name == "cifar10":
                xb = augment(xb)
            with _autocast(device, use_amp):
                out = model(xb)
            loss = (F.cross_entropy(out.float(), yb, reduction="none") * wb).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(yb)  # no .item() per batch: no GPU sync per batch
            seen += len(yb)
        sched.step()
        metrics = {
            "val_acc": evaluate(model, splits.val, device, use_amp),
            "train_loss": float(total) / max(1, seen),
        }
        last = epoch == ctx.resource or ctx.should_stop
        if epoch == ctx.resource:
            metrics["test_acc"] = evaluate(model, splits.test, device, use_amp)
        ctx.report(epoch, **metrics)
        # A rung's end (and a stop request) must be checkpointed: promotion resumes from it.
        # In between, every few epochs bounds what a crash loses without an fsync per epoch.
        if last or epoch % settings.checkpoint_every == 0:
            ctx.checkpoint(
                {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}
            )


if __name__ == "__main__":
    train(context())
