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
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpd.client import Client
from hpd.errors import HpdError
from tests.waits import WAIT_S, wait_until

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


class DaemonProc:
    """One state dir; start/kill/restart its daemon as a child process."""

    def __init__(self, state: Path, runtime: Path, *, fake_gpus: int = 0, cpu_slots: int = 1,
                 grace: float = 2.0, extra_env: dict[str, str] | None = None) -> None:
        self.state = state
        self.runtime = runtime
        self.fake_gpus = fake_gpus
        self.cpu_slots = cpu_slots
        self.grace = grace
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state.parent / f"{state.name}-daemon.log"
        self.pids: list[int] = []

    def env(self, fault: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("HPD_FAULT", None)
        env.pop("XDG_RUNTIME_DIR", None)  # the socket lives in <state>/run/
        env["HPD_HOME"] = str(self.state)
        env["HPD_FAKE_GPUS"] = str(self.fake_gpus)
        env["HPD_LOG_LEVEL"] = "WARNING"
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(self.extra_env)
        if fault:
            env["HPD_FAULT"] = fault
        return env

    def argv(self) -> list[str]:
        return [PY, "-m", "hpd", "start", "--foreground", "--state-dir", str(self.state),
                "--cpu-slots", str(self.cpu_slots), "--grace", str(self.grace)]

    def start(self, fault: str | None = None, wait: bool = True) -> subprocess.Popen[bytes]:
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), env=self.env(fault), stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=True, cwd=str(REPO),
            )
        self.pids.append(self.proc.pid)
        if wait:
            self.wait_ready()
        return self.proc

    def client(self, timeout: float = 30) -> Client:
        return Client(self.state, timeout=timeout)

    @property
    def socket(self) -> Path:
        return self.client().layout.socket

    def wait_ready(self, timeout: float = WAIT_S) -> None:
        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(HpdError, OSError), self.client(timeout=2) as c:
                c.ping()
                return True
            return False

        wait_until(answers, timeout, what="daemon ready", detail=self.tail, interval=0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> int:
        assert self.proc is not None
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        return pid

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.grace + 15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

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
        runtime = root / "rt"
        runtime.mkdir(mode=0o700)
        d = DaemonProc(root / "state", runtime, **kw)
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
