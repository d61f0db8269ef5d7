"""The embedded demo: a real search that runs anywhere in about a minute.

Owns the demo trial (a small numpy MLP on Fashion-MNIST, learning for real) and the demo spec
in ``hpd/defaults/demo.toml``. Fashion-MNIST is read from ``$HPD_FASHION_MNIST`` or the
repository's ``../shared/data/fashion-mnist``; where it is missing the demo says so and uses a
synthetic 10-class problem instead. numpy only: the demo needs no torch.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import struct
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hpd.trial import TrialContext

Array = npt.NDArray[np.float32]
N_TRAIN, N_VAL = 8_000, 2_000


def _data_root() -> Path | None:
    env = os.environ.get("HPD_FASHION_MNIST")
    here = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
    for cand in (Path(env) if env else None, here):
        if cand is not None and (cand / "train-images-idx3-ubyte.gz").is_file():
            return cand
    return None


def _idx(path: Path, ndim: int) -> npt.NDArray[np.uint8]:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


@functools.cache
def dataset() -> tuple[Array, npt.NDArray[np.int64], Array, npt.NDArray[np.int64], str]:
    """(x_train, y_train, x_val, y_val, source); cached for the life of the warm worker."""
    root = _data_root()
    if root is None:
        rng = np.random.default_rng(0)
        centers = rng.normal(size=(10, 784)).astype(np.float32)
        y = rng.integers(0, 10, N_TRAIN + N_VAL)
        x = centers[y] + 2.5 * rng.normal(size=(len(y), 784)).astype(np.float32)
        source = "synthetic (Fashion-MNIST not found)"
    else:
        images = _idx(root / "train-images-idx3-ubyte.gz", 3).reshape(-1, 784)
        labels = _idx(root / "train-labels-idx1-ubyte.gz", 1)
        idx = np.random.default_rng(0).permutation(len(labels))[: N_TRAIN + N_VAL]
        x = images[idx].astype(np.float32) / 255.0  # subset first: converting all 60k is slow
        y = labels[idx].astype(np.int64)
        x = (x - x.mean()) / x.std()
        source = f"Fashion-MNIST ({root})"
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:], source


def _init(hidden: int, seed: int) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.normal(size=(784, hidden)) * np.sqrt(2 / 784)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": (rng.normal(size=(hidden, 10)) * np.sqrt(2 / hidden)).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }


def _forward(p: dict[str, Array], x: Array) -> tuple[Array, Array]:
    h = np.maximum(x @ p["w1"] + p["b1"], 0)
    return h, h @ p["w2"] + p["b2"]


def _epoch(
    p: dict[str, Array], v: dict[str, Array], x: Array, y: Any, hp: dict[str, Any], rng: Any
) -> None:
    lr, mom, wd, bs = float(hp["lr"]), float(hp["momentum"]), float(hp["weight_decay"]), 128
    order = rng.permutation(len(y))
    for i in range(0, len(y), bs):
        b = order[i : i + bs]
        h, logits = _forward(p, x[b])
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        prob[np.arange(len(b)), y[b]] -= 1
        g2 = prob / len(b)
        gh = (g2 @ p["w2"].T) * (h > 0)
        grads = {"w2": h.T @ g2, "b2": g2.sum(0), "w1": x[b].T @ gh, "b1": gh.sum(0)}
        for k, g in grads.items():
            v[k] = mom * v[k] + g + wd * p[k]
            p[k] -= lr * v[k]


def accuracy(p: dict[str, Array], x: Array, y: Any) -> float:
    return float((_forward(p, x)[1].argmax(1) == y).mean())


def train(ctx: TrialContext) -> None:
    """The demo trial: restore, train the segment's epochs, report val_acc, checkpoint."""
    x, y, xv, yv, _ = dataset()
    hp = ctx.params
    state = ctx.restore()
    if state is None:
        params = _init(int(hp["hidden"]), ctx.seed)
        state = {"params": params, "velocity": {k: np.zeros_like(a) for k, a in params.items()}}
    for epoch in ctx.epochs():
        rng = np.random.default_rng([ctx.seed, epoch])
        _epoch(state["params"], state["velocity"], x, y, hp, rng)
        acc = accuracy(state["params"], xv, yv)
        ctx.report(epoch, val_acc=acc if np.isfinite(acc) else float("nan"))
        ctx.checkpoint(state)


def spec_path() -> Path:
    return Path(__file__).parent / "defaults" / "demo.toml"


def spec_to_submit() -> tuple[str | dict[str, Any], str]:
    """The demo spec (a path), or without Optuna the same search with random proposals (a
    dict); and the name of the sampler it uses."""
    if importlib.util.find_spec("optuna") is not None:
        return str(spec_path()), "tpe"
    with open(spec_path(), "rb") as f:
        spec = tomllib.load(f)
    spec["searcher"]["sampler"] = "random"
    spec["workdir"] = str(spec_path().parent)
    return spec, "random (Optuna not installed: pip install 'hpd[tpe]' for tpe)"
