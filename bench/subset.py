"""Benchmark: data-subset training on Fashion-MNIST (time per trial, test accuracy, selection cost).

For each strategy (full data, random, gradmatch per class, gradmatch per batch, craig) it trains
the same network from the same initialisation for a fixed number of epochs, with the subset
re-selected every ``--select-every`` epochs, and reports the time per trial (training plus
selection, not evaluation), the saving against full data, the test accuracy and the selection
cost as a fraction of one full-data epoch. Then a micro-benchmark: GRAD-MATCH selecting 10% of
20,000 samples (per class, on the features of the full-data model).

    python bench/subset.py                       # CPU, small MLP, a few minutes
    python bench/subset.py --device cuda --model resnet18 --amp

Prints a table and, last, one JSON line (also written to ``--out FILE`` when given). Owns
nothing the daemon uses.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpd.subset import SubsetLoader, last_layer_features, match_error, select  # noqa: E402

# bench name -> (SubsetLoader strategy, extra SubsetLoader arguments)
LOADERS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "gradmatch": ("gradmatch", {}),
    "gradmatch_pb": ("gradmatch", {"per_batch": True}),
    "gradmatch_pb_pool2": ("gradmatch", {"per_batch": True, "pool": 2.0}),
    "craig": ("craig", {}),
}
STRATEGIES = ("full", *LOADERS)


def _load_data_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "fmnist_data", REPO / "examples/fashion_mnist/data.py"
    )
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load(
    device: torch.device, limit: int | None, test_limit: int | None = None
) -> tuple[torch.Tensor, ...]:
    data = _load_data_module()
    out = []
    for split in ("train", "test"):
        x, y = data.load_fashion_mnist(split=split)
        cap = limit if split == "train" else test_limit
        if cap:
            x, y = x[:cap], y[:cap]
        xt = torch.from_numpy(x.copy()).float().div_(255).sub_(0.2860).div_(0.3530)[:, None]
        out += [xt.to(device), torch.from_numpy(y).to(device)]
    return tuple(out)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(out)) + self.short(x))


def resnet18(classes: int = 10) -> nn.Module:
    """ResNet-18 for 1x28x28 inputs: 3x3 stem, no max-pool (as in the anchors' runs)."""
    layers: list[nn.Module] = [nn.Conv2d(1, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def make_model(name: str) -> nn.Module:
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip
    if name == "resnet18":
        return resnet18()
    raise ValueError(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool) -> float:
    model.eval()
    correct = 0
    for s in range(0, len(x), 2048):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            correct += int((model(x[s : s + 2048]).argmax(1) == y[s : s + 2048]).sum())
    model.train()
    return correct / len(x)


def run(strategy: str, args: argparse.Namespace, data: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    xtr, ytr, xte, yte = data
    dev = xtr.device
    torch.manual_seed(args.seed)
    model = make_model(args.model).to(dev)
    if args.model == "resnet18" and dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ds = torch.utils.data.TensorDataset(xtr, ytr)
    if strategy == "full":
        loader: Any = None
        steps_per_epoch = math.ceil(len(ds) / args.batch_size)
    else:
        name, extra = LOADERS[strategy]
        loader = SubsetLoader(
            ds,
            strategy=name,
            fraction=args.fraction,
            select_every=args.select_every,
            model=model,
            batch_size=args.batch_size,
            seed=args.seed,
            amp=args.amp,
            feature_batch_size=args.feature_batch_size,
            fill_weight=args.fill_weight,
            **extra,
        )
        steps_per_epoch = len(loader)
    opt = torch.optim.SGD(
        model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15
    )
    model.train()
    epoch_times, selections = [], []
    _sync(dev)
    t_trial = time.perf_counter()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        if loader is None:
            perm = torch.randperm(len(ds), device=dev)
            batches: Any = ((xtr[i], ytr[i], None) for i in torch.split(perm, args.batch_size))
        else:
            loader.set_epoch(epoch)
            before = loader.timings.selections
            batches = loader
        for xb, yb, wb in batches:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.amp):
                losses = nn.functional.cross_entropy(model(xb), yb, reduction="none")
            loss = losses.mean() if wb is None else (losses * wb).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        _sync(dev)
        if loader is not None and loader.timings.selections > before and epoch > 0:
            selections.append(loader.timings.selection_seconds)
        epoch_times.append(time.perf_counter() - t0)
    trial_s = time.perf_counter() - t_trial
    acc = accuracy(model, xte, yte, args.amp)
    out: dict[str, Any] = {
        "strategy": strategy,
        "trial_s": trial_s,
        "test_acc": acc,
        "epoch_s_mean": statistics.fmean(epoch_times),
        "gradient_selections": len(selections),
        "selection_mean_s": statistics.fmean(selections) if selections else 0.0,
        "selection_total_s": loader.timings.selection_total_seconds if loader else 0.0,
        "subset_size": loader.timings.subset_size if loader else len(ds),
    }
    if loader is not None:
        out["features_last_s"] = loader.timings.features_seconds
        out["training_s"] = trial_s - out["selection_total_s"]
    return out | {"model": model}


def micro(model: nn.Module, xtr: torch.Tensor, ytr: torch.Tensor, seed: int) -> dict[str, Any]:
    """GRAD-MATCH selecting 10% of 20,000 samples (per class), on the full model's features."""
    m = min(20000, len(xtr))
    idx = torch.from_numpy(np.random.default_rng(seed).choice(len(xtr), m, replace=False))
    ds = torch.utils.data.TensorDataset(xtr[idx.to(xtr.device)], ytr[idx.to(xtr.device)])
    t0 = time.perf_counter()
    feats = last_layer_features(model, ds)
    _sync(xtr.device)
    t_feat = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        sel = select("gradmatch", feats, 0.1, labels=feats.labels, seed=seed)
        _sync(xtr.device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    rnd = statistics.fmean(
        match_error(feats, *select("random", feats, 0.1, labels=feats.labels, seed=s))
        for s in range(5)
    )
    return {
        "gradmatch_10pct_of_20k_s": min(times),
        "runs_s": times,
        "cpu_s": min(cpu),
        "features_20k_s": t_feat,
        "gradmatch_error": match_error(feats, *sel),
        "gradmatch_error_fill0": match_error(
            feats, *select("gradmatch", feats, 0.1, labels=feats.labels, seed=seed, fill_weight=0.0)
        ),
        "random_error": rnd,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="mlp", choices=("mlp", "cnn", "resnet18"))
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--fraction", type=float, default=0.125)
    p.add_argument("--select-every", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--feature-batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--train-limit", type=int, default=0, help="use only the first N training images"
    )
    p.add_argument("--test-limit", type=int, default=0, help="test on only the first N test images")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fill-weight", type=float, default=1.0, help="GRAD-MATCH fill (of n/k)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON line here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.amp = bool(args.amp and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = load(device, args.train_limit or None, args.test_limit or None)
    strategies = [s for s in args.strategies.split(",") if s]
    results: dict[str, dict[str, Any]] = {}
    full_model = None
    for s in strategies:
        r = run(s, args, data)
        model = r.pop("model")
        if s == "full":
            full_model = model
        results[s] = r
        brief = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
        print(f"# {s}: {json.dumps(brief)}", flush=True)
    full = results.get("full")
    for r in results.values():
        if full:
            r["time_saving_pct"] = 100.0 * (1.0 - r["trial_s"] / full["trial_s"])
            r["selection_frac_of_full_epoch"] = r["selection_mean_s"] / full["epoch_s_mean"]
    if full_model is None:
        full_model = make_model(args.model).to(device)
    mic = micro(full_model, data[0], data[1], args.seed)
    report(args, device, results, mic)
    summary = {
        "bench": "subset",
        "device": str(device),
        "model": args.model,
        "epochs": args.epochs,
        "fraction": args.fraction,
        "select_every": args.select_every,
        "threads": args.threads,
        "load_avg_1m": os.getloadavg()[0],
        "results": results,
        "micro": mic,
    }
    line = json.dumps(summary)
    print(line)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")


def report(
    args: argparse.Namespace, device: torch.device, results: dict[str, Any], mic: dict[str, Any]
) -> None:
    print(
        f"\nFashion-MNIST, {args.model} on {device}, {args.epochs} epochs, fraction "
        f"{args.fraction}, select_every {args.select_every}, batch {args.batch_size}, "
        f"threads {args.threads}, load avg {os.getloadavg()[0]:.1f}"
    )
    cols = ("strategy", "trial s", "saving", "test acc", "sel s (mean)", "of it: feat s")
    cols += ("sel/full epoch",)
    head = f"{cols[0]:<20}{cols[1]:>9}{cols[2]:>9}{cols[3]:>10}{cols[4]:>14}{cols[5]:>15}"
    head += f"{cols[6]:>16}"
    print(head)
    print("-" * len(head))
    for s, r in results.items():
        saving = f"{r['time_saving_pct']:.1f}%" if "time_saving_pct" in r else "-"
        frac = f"{r['selection_frac_of_full_epoch']:.3f}" if r.get("gradient_selections") else "-"
        acc = f"{100 * r['test_acc']:.2f}%"
        feat = f"{r['features_last_s']:.3f}" if r.get("gradient_selections") else "-"
        print(
            f"{s:<20}{r['trial_s']:>9.1f}{saving:>9}{acc:>10}{r['selection_mean_s']:>14.3f}"
            f"{feat:>15}{frac:>16}"
        )
    runs = ", ".join(f"{t:.3f}" for t in mic["runs_s"])
    print(
        f"micro: gradmatch 10% of 20,000 samples: {mic['gradmatch_10pct_of_20k_s']:.3f} s wall "
        f"(runs {runs}; cpu {mic['cpu_s']:.3f} s); features pass {mic['features_20k_s']:.3f} s; "
        f"matching error {mic['gradmatch_error']:.4f} (fill_weight 0: "
        f"{mic['gradmatch_error_fill0']:.4f}) vs random {mic['random_error']:.4f}"
    )


if __name__ == "__main__":
    main()
