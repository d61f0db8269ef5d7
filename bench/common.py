"""Shared helpers for the benchmarks: a real daemon in a temporary state dir, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpd.client import Client
from hpd.client.local import LocalDaemon

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def daemon(fake_gpus: int = 4, args: tuple[str, ...] = ()) -> Iterator[Client]:
    """A daemon on fake GPUs (the shared harness, ``hpd.client.local``), stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="hpd-bench-") as tmp:
        env = {"PYTHONPATH": str(REPO), "HPD_LOG_LEVEL": "WARNING"}
        if "HPD_PROFILE" in os.environ:
            env["HPD_PROFILE"] = os.environ["HPD_PROFILE"]
        state = Path(tmp) / "state"
        with LocalDaemon(state, fake_gpus=fake_gpus, args=args, extra_env=env, cwd=REPO) as d:
            client = d.client()
            try:
                yield client
            finally:
                client.close()


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "hpd": __import__("hpd").__version__,
    }


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def emit(result: dict[str, Any]) -> None:
    """The final JSON line every benchmark prints (and appends to bench/results/)."""
    line = json.dumps(result)
    print(line)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    with open(out / f"{result['bench']}.jsonl", "a") as f:
        f.write(line + "\n")
