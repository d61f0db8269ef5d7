"""Shared helpers for the benchmarks: a real daemon in a temporary state dir, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpd.client import Client
from hpd.errors import HpdError

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def daemon(fake_gpus: int = 4, args: tuple[str, ...] = ()) -> Iterator[Client]:
    """A daemon on fake GPUs, stopped (SIGTERM) on exit."""
    with tempfile.TemporaryDirectory(prefix="hpd-bench-") as tmp:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("HPD_") or k == "HPD_PROFILE"
        }
        env.pop("XDG_RUNTIME_DIR", None)
        env.update(HPD_FAKE_GPUS=str(fake_gpus), PYTHONPATH=str(REPO), HPD_LOG_LEVEL="WARNING")
        cmd = [sys.executable, "-m", "hpd", "start", "--foreground", "--state-dir", tmp, *args]
        proc = subprocess.Popen(cmd, env=env, cwd=REPO)
        try:
            client = Client(tmp)
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.ping()
                    break
                except (HpdError, OSError):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("daemon did not start") from None
                    time.sleep(0.05)
            yield client
            client.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


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
