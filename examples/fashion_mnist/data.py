"""Fashion-MNIST from its raw IDX gzip files, with numpy only (no torchvision, no network).

Owns ``load_fashion_mnist``. The files are the four upstream ``*-ubyte.gz`` files; see
``shared/data/fashion-mnist/README.md``. The root defaults to ``$HPD_FASHION_MNIST``, else the
``shared/data/fashion-mnist`` folder next to this repository.

Must never: download anything or cache converted copies on disk.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def default_root() -> Path:
    env = os.environ.get("HPD_FASHION_MNIST")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "fashion-mnist"


def _read_idx(path: Path, magic: int, ndim: int) -> npt.NDArray[np.uint8]:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    head = struct.unpack(">" + "I" * (1 + ndim), raw[: 4 * (1 + ndim)])
    if head[0] != magic:
        raise ValueError(f"{path}: bad IDX magic {head[0]:#010x}, expected {magic:#010x}")
    shape = head[1:]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {data.size} bytes of data for shape {shape}")
    return data.reshape(shape)


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, split: str = "train"
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` for ``split`` "train" (60,000) or
    "test" (10,000)."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    base = Path(root) if root is not None else default_root()
    img_name, lab_name = _FILES[split]
    images = _read_idx(base / img_name, 0x00000803, 3)
    labels = _read_idx(base / lab_name, 0x00000801, 1).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels
