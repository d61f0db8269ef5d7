"""A daemon in a child process: ``hpd start --foreground`` in a state dir of its own.

The one harness that the tests, the benchmarks and a notebook use to run a real daemon (real
socket, real SQLite file, fake GPUs if asked) and to start, kill and restart it:

    with LocalDaemon(tmp, fake_gpus=4) as d:
        exp = d.client().submit("spec.toml")

Owns the child process and its environment; must never reach into the daemon's state other
than through the socket (``client()``), so what it shows is what a user sees.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from hpd.client.api import Client
from hpd.errors import HpdError

READY_S = 90.0  # a loaded 2-core machine can take tens of seconds to import and recover


class LocalDaemon:
    """``hpd start --foreground --state-dir STATE`` as a child process in its own session.

    ``env`` is the daemon's whole environment (the caller's, less every ``HPD_*`` variable and
    ``XDG_RUNTIME_DIR``, so the socket lives in the state dir), and stays readable so that a
    CLI run beside it can reuse it. ``fake_gpus`` sets ``HPD_FAKE_GPUS``; ``extra_env`` and
    ``args`` (after ``--state-dir``) are added as given. Output goes to ``log``.
    """

    def __init__(
        self,
        state: Path | str,
        *,
        fake_gpus: int | None = None,
        args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        log: Path | str | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        self.state = Path(state)
        self.args = list(args)
        self.log = Path(log) if log is not None else self.state.parent / f"{self.state.name}.log"
        self.cwd = str(cwd) if cwd is not None else None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HPD_")}
        self.env.pop("XDG_RUNTIME_DIR", None)
        if fake_gpus is not None:
            self.env["HPD_FAKE_GPUS"] = str(fake_gpus)
        self.env.update(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # every daemon this harness started, oldest first

    def argv(self) -> list[str]:
        state = str(self.state)
        return [sys.executable, "-m", "hpd", "start", "--foreground", "--state-dir", state]

    def start(
        self, *, fault: str | None = None, wait: bool = True, timeout: float = READY_S
    ) -> LocalDaemon:
        """Start the daemon (``fault`` sets ``HPD_FAULT`` for this start only); with ``wait``,
        return once it answers a ping."""
        self.state.mkdir(parents=True, exist_ok=True)
        env = dict(self.env)
        if fault:
            env["HPD_FAULT"] = fault
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.argv(), *self.args],
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a SIGKILL meant for the daemon reaches it alone
            )
        self.pids.append(self.proc.pid)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = READY_S) -> None:
        deadline = time.monotonic() + timeout
        while not self._answers():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the daemon did not answer within {timeout:g} s\n{self.tail()}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        if not self.alive():
            code = self.proc.returncode if self.proc is not None else None
            raise RuntimeError(f"the daemon exited ({code}):\n{self.tail()}")
        with contextlib.suppress(HpdError, OSError), self.client(timeout=2) as c:
            c.ping()
            return True
        return False

    def client(self, timeout: float = 30) -> Client:
        return Client(self.state, timeout=timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL the daemon (a crash), wait for it, return its pid."""
        assert self.proc is not None, "never started"
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        return self.proc.pid

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (a graceful stop); SIGKILL if it has not exited within ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None, "never started"
        return self.proc.wait(timeout)

    def tail(self, lines: int = 40) -> str:
        """The end of the daemon's output."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> LocalDaemon:
        return self.start() if not self.alive() else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
