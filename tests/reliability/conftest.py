"""Harness for the reliability tests: real daemons in subprocesses, killed and restarted.

Every daemon runs ``python -m hpd start --foreground`` in its own process group so a test can
SIGKILL it (and only it) and inspect the SQLite file offline afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpd.client.local import LocalDaemon

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def base_spec(**over: Any) -> dict[str, Any]:
    """A synthetic-trial spec (zero cost per epoch unless params.sleep is set)."""
    spec: dict[str, Any] = {
        "name": "rel",
        "metric": "loss",
        "mode": "min",
        "seed": 7,
        "entrypoint": "examples.synthetic.train:train",
        "workdir": str(REPO),
        "searcher": {
            "name": "asha",
            "max_trials": 9,
            "min_resource": 1,
            "max_resource": 9,
            "eta": 3,
        },
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
            "momentum": {"type": "uniform", "low": 0.0, "high": 1.0},
        },
        "resources": {"gpus_per_trial": 0, "max_concurrent": 4},
        "limits": {"max_restarts": 3, "progress_timeout_s": 60},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


class DaemonProc(LocalDaemon):
    """The shared harness (``hpd.client.local``) plus offline reads of the SQLite file."""

    def __init__(self, state: Path, *, fake_gpus: int = 0, cpu_slots: int = 1,
                 grace: float = 2.0, extra_env: dict[str, str] | None = None) -> None:
        env = {"HPD_HOME": str(state), "HPD_LOG_LEVEL": "WARNING",
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        super().__init__(
            state, fake_gpus=fake_gpus, args=["--cpu-slots", str(cpu_slots), "--grace", str(grace)],
            extra_env={**env, **(extra_env or {})}, log=state.parent / f"{state.name}-daemon.log",
            cwd=REPO,
        )
        self.grace = grace

    def kill9(self) -> int:
        return self.kill()

    def stop(self, timeout: float | None = None) -> int | None:
        return super().stop(self.grace + 15 if timeout is None else timeout)

    @property
    def socket(self) -> Path:
        return self.client().layout.socket

    @property
    def db(self) -> Path:
        return self.state / "hpd.sqlite3"

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the DB offline (read-only; use while the daemon is dead, or for WAL readers)."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def integrity(self) -> str:
        return str(self.sql("PRAGMA integrity_check")[0][0])


@pytest.fixture(autouse=True)
def _no_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("HPD_HOME", raising=False)


@pytest.fixture
def make_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    made: list[DaemonProc] = []

    def make(**kw: Any) -> DaemonProc:
        root = tmp_path_factory.mktemp("hpd")
        d = DaemonProc(root / "state", **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.alive():
            d.kill9()
        for pid in d.pids:
            kill_descendants_of(pid)


def processes_of_daemon(pid: int) -> list[int]:
    """Live processes whose environment says they were started by daemon ``pid``."""
    needle = f"HPD_DAEMON_PID={pid}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] == "Z":
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry))
    return found


def wait_no_processes_of(pid: int, timeout: float = 30.0) -> list[int]:
    """The processes of daemon ``pid`` still alive after waiting up to ``timeout`` s for none.

    They die with their daemon (PR_SET_PDEATHSIG): within moments, unless the machine is busy.
    """
    deadline = time.monotonic() + timeout
    left = processes_of_daemon(pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = processes_of_daemon(pid)
    return left


def kill_descendants_of(pid: int) -> None:
    for p in processes_of_daemon(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)


def final_ladder(trials: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(index, params, state, {rung: result}) per trial: what must match an uninterrupted run."""
    return sorted(
        (t["index"], json.dumps(t["params"], sort_keys=True), t["state"],
         json.dumps(t["results"], sort_keys=True))
        for t in trials
    )
