"""Shared fixtures: a real daemon (real socket, real SQLite file, fake GPUs) in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpd.client import Client
from hpd.errors import HpdError
from tests.waits import wait_until

REPO = Path(__file__).resolve().parent.parent


class DaemonProcess:
    """``hpd start --foreground`` as a child process, with helpers to kill and restart it."""

    def __init__(self, state: Path, env: dict[str, str], args: list[str]) -> None:
        self.state = state
        self.env = env
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, extra_env: dict[str, str] | None = None) -> DaemonProcess:
        env = {**self.env, **(extra_env or {})}
        cmd = [sys.executable, "-m", "hpd", "start", "--foreground", "--state-dir", str(self.state), *self.args]
        log = open(self.state.parent / "daemon.out", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=REPO)
        wait_until(self._answers, what="the daemon answering a ping", detail=self._out)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited: {self._out()}")
        try:
            with Client(self.state, timeout=2) as c:
                c.ping()
        except (HpdError, OSError):
            return False
        return True

    def _out(self) -> str:
        return (self.state.parent / "daemon.out").read_text()[-2000:]

    def client(self) -> Client:
        return Client(self.state)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[DaemonProcess] = []

    def make(fake_gpus: int = 4, args: list[str] | None = None, **env: str) -> DaemonProcess:
        state = tmp_path / f"state{len(made)}"
        state.mkdir()
        e = {k: v for k, v in os.environ.items() if not k.startswith("HPD_")}
        e.pop("XDG_RUNTIME_DIR", None)
        e["HPD_FAKE_GPUS"] = str(fake_gpus)
        e["PYTHONPATH"] = str(REPO)
        e.update(env)
        d = DaemonProcess(state, e, args if args is not None else ["--cpu-slots", "2", "--grace", "5"])
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


@pytest.fixture
def daemon(daemon_factory: Any) -> DaemonProcess:
    return daemon_factory().start()  # type: ignore[no-any-return]


def synthetic_spec(**over: Any) -> dict[str, Any]:
    """The synthetic search as a dict; keyword arguments override top-level tables/keys."""
    spec: dict[str, Any] = {
        "name": "synthetic",
        "metric": "loss",
        "mode": "min",
        "seed": 0,
        "entrypoint": "examples.synthetic.train:train",
        "workdir": str(REPO),
        "searcher": {"name": "asha", "max_trials": 27, "min_resource": 1, "max_resource": 9, "eta": 3},
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
            "momentum": {"type": "uniform", "low": 0.0, "high": 1.0},
        },
        "resources": {"gpus_per_trial": 1, "max_concurrent": 4},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        elif value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec
