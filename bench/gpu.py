"""GPU benchmark (issue 6 part 3): packing trials on one GPU, for the H100. Exits at once without CUDA.

Three parts, each printing a table; a final JSON line with all of them:

1. Saturated throughput. ``k`` plain training processes (no hpd) on the GPU at once, k = 1, 2,
   4, 8 (stopping once the total grows < 5%): training samples/s summed over the processes,
   counted over a window after their warm-up. Models: ``cnn`` (a small CNN on
   ../shared/data/fashion-mnist, held on the GPU) and ``resnet18`` (CIFAR-10 size, random
   tensors), batch 128, bf16 autocast, channels_last. Also the cold start of one process
   (``import torch`` + a CUDA context), which warm workers remove from every segment.
2. Search throughput. hpd (``hpd start --slots-per-gpu N``, N = 1, 2, 4, 8, real GPUs) runs an
   ASHA search of the same model (lr, momentum, weight decay; eta 3, 1..9 epochs of a fixed
   number of steps) whose trials report their samples/s; the search's throughput = samples
   trained by all trials / wall, against part 1's saturated figure (goal >= 0.8) and against
   N = 1 (goal >= 3x) for batch-128 trials.
3. Time to a target test accuracy (cnn on Fashion-MNIST): ASHA against random search with the
   same budget (max_trials x max epochs), at the best N of part 2: seconds from submit until
   some trial first reports test accuracy >= ``--target``.

    .venv/bin/python -m bench.gpu                # everything (about 20 minutes on an H100)
    .venv/bin/python -m bench.gpu --parts 1 --models resnet18

Sizing flags (``bench/gpu_suite.sh`` uses them to fit a time budget): ``--processes`` (part 1's
k), ``--start-delay`` (seconds part 1's processes get to start before they measure together),
``--steps-per-epoch``, ``--trials``, ``--max-epochs``, ``--warmup``, ``--window``; ``--out FILE``
writes the final JSON line there instead of appending it to ``bench/results/``. ``--device cpu
--fake-gpus N`` runs the same code on the CPU, the daemon on N fake GPUs (a dry run of the
plumbing; its figures mean nothing). Fashion-MNIST is read from ``$HPD_FASHION_MNIST`` when set.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FASHION = Path(
    os.environ.get("HPD_FASHION_MNIST") or REPO.parent / "shared" / "data" / "fashion-mnist"
)
STEPS_PER_EPOCH = {"cnn": 200, "resnet18": 100}


# ---- models and data (torch imported lazily: this module must import without it) -----------


def _idx(path: Path) -> Any:
    import numpy as np

    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


_DATA: dict[str, Any] = {}


def data(model: str, device: Any) -> tuple[Any, Any, Any, Any]:
    """(train x, train y, test x, test y) on ``device``; cached per process (warm workers keep it)."""
    import torch

    key = f"{model}:{device}"
    if key not in _DATA:
        if model == "cnn":

            def load(prefix: str, cap: int | None) -> tuple[Any, Any]:
                x = torch.from_numpy(_idx(FASHION / f"{prefix}-images-idx3-ubyte.gz")[:cap].copy())
                y = torch.from_numpy(_idx(FASHION / f"{prefix}-labels-idx1-ubyte.gz")[:cap].copy())
                return (
                    x.float().div(255).sub(0.286).div(0.353).unsqueeze(1).to(device),
                    y.long().to(device),
                )

            # A dry run (--device cpu) trains and tests on a slice: seconds, not minutes.
            cpu = device.type == "cpu"
            _DATA[key] = (
                *load("train", 4096 if cpu else None),
                *load("t10k", 512 if cpu else None),
            )
        else:
            g = torch.Generator().manual_seed(0)
            x = torch.randn(4096, 3, 32, 32, generator=g).to(device)
            y = torch.randint(0, 10, (4096,), generator=g).to(device)
            _DATA[key] = (x, y, x[:1024], y[:1024])
    return _DATA[key]  # type: ignore[no-any-return]


def build(model: str) -> Any:
    import torch.nn as nn

    if model == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )
    import torchvision

    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = nn.Identity()
    return net


class Trainer:
    def __init__(
        self,
        model: str,
        batch: int,
        lr: float = 0.05,
        momentum: float = 0.9,
        wd: float = 5e-4,
        device: str = "cuda",
    ) -> None:
        import torch

        self.torch, self.model, self.batch = torch, model, batch
        self.device = torch.device(device)
        self.x, self.y, self.tx, self.ty = data(model, self.device)
        self.net = build(model).to(self.device).to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
        self.gen = torch.Generator(device=self.device).manual_seed(0)

    def _autocast(self) -> Any:
        # bf16 autocast on CUDA; on the CPU (a dry run) it would only slow the convs down.
        cuda = self.device.type == "cuda"
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16, enabled=cuda)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def steps(self, n: int) -> int:
        """n optimiser steps; returns the samples trained (synchronised)."""
        torch = self.torch
        self.net.train()
        for _ in range(n):
            idx = torch.randint(
                0, self.x.shape[0], (self.batch,), device=self.device, generator=self.gen
            )
            with self._autocast():
                out = self.net(self.x[idx].contiguous(memory_format=torch.channels_last))
                loss = torch.nn.functional.cross_entropy(out, self.y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self._sync()
        return n * self.batch

    def accuracy(self) -> float:
        torch = self.torch
        self.net.eval()
        correct = 0
        with torch.no_grad(), self._autocast():
            for i in range(0, self.tx.shape[0], 1024):
                correct += (
                    (self.net(self.tx[i : i + 1024]).argmax(1) == self.ty[i : i + 1024])
                    .sum()
                    .item()
                )
        return correct / self.tx.shape[0]


# ---- part 1: plain processes --------------------------------------------------------------


def plain_worker(
    model: str, batch: int, warmup: float, window: float, start_at: float, device: str = "cuda"
) -> None:
    """One plain training process: prints its samples/s over [start_at + warmup, + window]."""
    t = Trainer(model, batch, device=device)
    t.steps(5)
    while time.time() < start_at + warmup:
        t.steps(5)
    t0, n = time.time(), 0
    while time.time() < t0 + window:
        n += t.steps(5)
    print(json.dumps({"samples_per_s": n / (time.time() - t0)}), flush=True)


def saturated(
    model: str,
    batch: int,
    ks: list[int],
    warmup: float,
    window: float,
    start_delay: float = 15.0,
    device: str = "cuda",
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for k in ks:
        start_at = time.time() + start_delay + 2 * k  # all k processes start measuring together
        code = (
            f"from bench.gpu import plain_worker; plain_worker({model!r}, {batch}, {warmup}, "
            f"{window}, {start_at}, {device!r})"
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
            )
            for _ in range(k)
        ]
        outs = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
        total = sum(o["samples_per_s"] for o in outs)
        rows.append({"model": model, "batch": batch, "processes": k, "samples_per_s": total})
        print(f"  {model} batch {batch}: {k} processes, {total:.0f} samples/s", flush=True)
        if len(rows) > 1 and total < 1.05 * rows[-2]["samples_per_s"]:
            break
    return rows


def cold_start(device: str = "cuda") -> float:
    t0 = time.monotonic()
    code = "import torch; torch.zeros(1, device='cuda'); torch.cuda.synchronize()"
    subprocess.run([sys.executable, "-c", code if device == "cuda" else "import torch"], check=True)
    return time.monotonic() - t0


# ---- parts 2 and 3: hpd searches ---------------------------------------------------------


def trial(ctx: Any) -> None:
    """The search's trial (entrypoint ``bench.gpu:trial``): reports accuracy and samples/s per epoch."""
    p = ctx.params
    device = str(p.get("device", "cuda"))
    t = Trainer(
        p["model"], int(p["batch"]), float(p["lr"]), float(p["momentum"]), float(p["wd"]), device
    )
    state = ctx.restore()
    if state is not None:
        t.net.load_state_dict(state["net"])
        t.opt.load_state_dict(state["opt"])
    for epoch in ctx.epochs():
        t0 = time.monotonic()
        n = t.steps(int(p.get("steps") or STEPS_PER_EPOCH[p["model"]]))
        train_s = time.monotonic() - t0
        ctx.report(epoch, accuracy=t.accuracy(), samples=float(n), samples_per_s=n / train_s)
    ctx.checkpoint({"net": t.net.state_dict(), "opt": t.opt.state_dict()})


def gpu_spec(
    model: str,
    batch: int,
    searcher: str,
    trials: int,
    max_epochs: int,
    concurrent: int,
    steps: int | None = None,
    device: str = "cuda",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": f"gpu-{model}-{searcher}",
        "metric": "accuracy",
        "mode": "max",
        "workdir": str(REPO),
        "entrypoint": "bench.gpu:trial",
        "searcher": {
            "name": searcher,
            "max_trials": trials,
            "min_resource": 1,
            "max_resource": max_epochs,
            "eta": 3,
        },
        "space": {
            "model": {"type": "choice", "values": [model]},
            "batch": {"type": "choice", "values": [batch]},
            "lr": {"type": "loguniform", "low": 1e-3, "high": 0.5},
            "momentum": {"type": "uniform", "low": 0.5, "high": 0.99},
            "wd": {"type": "loguniform", "low": 1e-5, "high": 1e-2},
        },
        "resources": {"gpus_per_trial": 1, "max_concurrent": concurrent},
    }
    # Fixed facts ride in the space as one-value choices, as model and batch do.
    if steps:
        spec["space"]["steps"] = {"type": "choice", "values": [steps]}
    if device != "cuda":
        spec["space"]["device"] = {"type": "choice", "values": [device]}
    return spec


def real_daemon(slots_per_gpu: int, fake_gpus: int = 0) -> Any:
    """A daemon on the real GPUs (bench.common.daemon always fakes them); on ``fake_gpus``
    fake ones when that is nonzero (a dry run on the CPU). A ``LocalDaemon``, not started."""
    from hpd.client.local import LocalDaemon

    tmp = tempfile.mkdtemp(prefix="hpd-gpu-bench-")
    env = {"HPD_LOG_LEVEL": "WARNING"}
    if "HPD_FASHION_MNIST" in os.environ:  # where the trials' data is, not the daemon's settings
        env["HPD_FASHION_MNIST"] = os.environ["HPD_FASHION_MNIST"]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return LocalDaemon(
        Path(tmp) / "state",
        fake_gpus=fake_gpus or None,
        args=["--slots-per-gpu", str(slots_per_gpu)],
        extra_env=env,
        cwd=REPO,
    )


def search(
    model: str,
    batch: int,
    slots_per_gpu: int,
    searcher: str,
    trials: int,
    max_epochs: int,
    target: float | None = None,
    steps: int | None = None,
    device: str = "cuda",
    fake_gpus: int = 0,
) -> dict[str, Any]:
    d = real_daemon(slots_per_gpu, fake_gpus)
    with d:
        client = d.client()
        slots = slots_per_gpu * (fake_gpus or _gpu_count())
        t0 = time.time()
        spec = gpu_spec(model, batch, searcher, trials, max_epochs, slots, steps, device)
        exp = client.submit(spec)
        exp.wait()
        wall = time.time() - t0
        exported = exp.export()["trials"]
        events = exp.events()
        best = exp.best()
    shutil.rmtree(d.state.parent, ignore_errors=True)
    samples = sum(m.get("samples", 0.0) for t in exported for m in t["metrics"])
    reached = None
    if target is not None:
        hits = [
            m["time"]
            for t in exported
            for m in t["metrics"]
            if m.get("accuracy", 0) >= target and "time" in m
        ]
        if not hits:  # the per-epoch rows may carry no time: fall back to result events
            hits = [
                e["time"] for e in events if e["type"] == "result" and e.get("value", 0) >= target
            ]
        reached = min(hits) - t0 if hits else None
    epochs = sum(
        int(e["resource"]) - int(e["from_epoch"]) for e in events if e["type"] == "segment_started"
    )
    states: dict[str, int] = {}
    for t in exported:
        states[t["state"]] = states.get(t["state"], 0) + 1
    return {
        "model": model,
        "batch": batch,
        "slots_per_gpu": slots_per_gpu,
        "searcher": searcher,
        "trials": len(exported),
        "trial_states": states,
        "epochs": epochs,
        "wall_s": wall,
        "samples_per_s": samples / wall,
        "best_accuracy": best["value"] if best else None,
        "time_to_target_s": reached,
    }


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--models", nargs="+", default=["cnn", "resnet18"], choices=["cnn", "resnet18"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--slots-per-gpu", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--trials", type=int, default=27)
    ap.add_argument("--max-epochs", type=int, default=9)
    ap.add_argument("--target", type=float, default=0.90, help="test accuracy for part 3 (cnn)")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8], help="part 1's k")
    ap.add_argument(
        "--start-delay", type=float, default=15.0, help="part 1: seconds for k processes to start"
    )
    ap.add_argument(
        "--steps-per-epoch", type=int, default=None, help="default: cnn 200, resnet 100"
    )
    ap.add_argument("--out", type=Path, default=None, help="write the JSON line here")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a dry run")
    ap.add_argument("--fake-gpus", type=int, default=0, help="with --device cpu (default 1)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("bench/gpu.py: skipped: torch is not installed (this benchmark needs a CUDA GPU)")
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench/gpu.py: skipped: torch.cuda.is_available() is False: no CUDA GPU on this "
            "machine; run it on the H100"
        )
        return
    from bench.common import emit, machine, table

    cpu = args.device == "cpu"
    fake = max(1, args.fake_gpus) if cpu else 0
    out: dict[str, Any] = {
        "bench": "gpu",
        "device": args.device,
        "machine": {
            **machine(),
            "gpu": f"{fake} fake GPUs (CPU dry run)" if cpu else torch.cuda.get_device_name(0),
            "gpus": fake or torch.cuda.device_count(),
            "torch": torch.__version__,
        },
    }
    sizes = {"device": args.device, "fake_gpus": fake, "steps": args.steps_per_epoch}
    if 1 in args.parts:
        out["cold_start_s"] = cold_start(args.device)
        sat = [
            r
            for m in args.models
            for r in saturated(
                m,
                args.batch,
                args.processes,
                args.warmup,
                args.window,
                args.start_delay,
                args.device,
            )
        ]
        out["saturated"] = sat
        print(
            table(
                ["model", "batch", "processes", "samples/s"],
                [[r["model"], r["batch"], r["processes"], r["samples_per_s"]] for r in sat],
            )
        )
        print(f"cold process (import torch + CUDA context): {out['cold_start_s']:.1f} s")
    if 2 in args.parts:
        rows = []
        for m in args.models:
            for n in args.slots_per_gpu:
                r = search(m, args.batch, n, "asha", args.trials, args.max_epochs, **sizes)
                sat_best = max(
                    (s["samples_per_s"] for s in out.get("saturated", []) if s["model"] == m),
                    default=None,
                )
                one = next(
                    (
                        x["samples_per_s"]
                        for x in rows
                        if x["model"] == m and x["slots_per_gpu"] == 1
                    ),
                    None,
                )
                r["of_saturated"] = r["samples_per_s"] / sat_best if sat_best else None
                r["over_one_slot"] = r["samples_per_s"] / one if one else None
                rows.append(r)
                print(f"  {m} {n} slots/GPU: {r['samples_per_s']:.0f} samples/s", flush=True)
        out["search"] = rows
        print(
            table(
                [
                    "model",
                    "slots/GPU",
                    "wall s",
                    "samples/s",
                    "of saturated (goal >= 0.8)",
                    "over 1 slot/GPU (goal >= 3x)",
                ],
                [
                    [
                        r["model"],
                        r["slots_per_gpu"],
                        r["wall_s"],
                        r["samples_per_s"],
                        r["of_saturated"] if r["of_saturated"] else "-",
                        r["over_one_slot"] if r["over_one_slot"] else "-",
                    ]
                    for r in rows
                ],
            )
        )
    if 3 in args.parts:
        best_n = max(
            (r for r in out.get("search", []) if r["model"] == "cnn"),
            key=lambda r: r["samples_per_s"],
            default={"slots_per_gpu": 4},
        )["slots_per_gpu"]
        asha = search(
            "cnn", args.batch, best_n, "asha", args.trials, args.max_epochs, args.target, **sizes
        )
        # The same budget: as many full-length random trials as ASHA's epochs allow.
        n_random = max(1, round(asha["epochs"] / args.max_epochs))
        ttt = [
            asha,
            search(
                "cnn",
                args.batch,
                best_n,
                "random",
                n_random,
                args.max_epochs,
                args.target,
                **sizes,
            ),
        ]
        out["time_to_target"] = ttt
        print(
            table(
                [
                    "searcher",
                    "slots/GPU",
                    "wall s",
                    f"s to accuracy >= {args.target}",
                    "best accuracy",
                ],
                [
                    [
                        r["searcher"],
                        r["slots_per_gpu"],
                        r["wall_s"],
                        r["time_to_target_s"] or "never",
                        r["best_accuracy"],
                    ]
                    for r in ttt
                ],
            )
        )
    if args.out is None:
        emit(out)
    else:  # the caller keeps it (bench/gpu_suite.sh); nothing appended to bench/results/
        line = json.dumps(out)
        print(line)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a `timeout`) unwinds like an exception, so that each search's daemon stops and its dir goes.

    Once only: `timeout` signals the process and then its process group, and a second exit
    inside the cleanup would cut it short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    main()
