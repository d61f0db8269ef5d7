"""Trial processes, daemon side: spawn, watch, signal and classify segments.

Owns the two ways a segment runs: ``command`` trials as one process per segment (through the
parent-death shim, in their own process group, output to the trial's log) and ``entrypoint``
trials as calls into a warm worker process per slot. Every process runs in its own process
group, so a signal reaches the trial's children too. Must never touch the database or decide
what runs next; the daemon does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hpd.core import protocol
from hpd.errors import HpdError, ProtocolError
from hpd.io import procs

logger = logging.getLogger(__name__)

Handler = Callable[[protocol.Request], Awaitable[Any]]
Status = Literal["ok", "crashed", "lost"]  # lost: its node went away (not the trial's fault)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a segment's process or call ended (the daemon decides what that means)."""

    status: Status
    message: str = ""
    exit_code: int | None = None
    worker_died: bool = False
    # What a warm worker's answer carried: the last reports and a final inline checkpoint,
    # not yet validated or recorded (the daemon does both, with the segment's result).
    end: Mapping[str, Any] | None = None

    @classmethod
    def answered(cls, answer: object) -> Outcome:
        """A warm worker's answer: what it carried of the segment's end."""
        end = answer if isinstance(answer, dict) else {}
        return cls("ok", end={k: end[k] for k in ("reports", "checkpoint") if k in end})


@dataclass(frozen=True, slots=True)
class Identity:
    pid: int
    pgid: int
    start_ticks: int | None
    boot_id: str


@dataclass
class Launch:
    """Everything needed to run one segment."""

    segment: dict[str, Any]
    log_path: Path
    env: dict[str, str]
    cwd: str
    command: tuple[str, ...] | None = None
    entrypoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    header: str = ""  # the first line of this segment in the trial's log

    def warm_args(self) -> dict[str, Any]:
        """The 'run' a warm worker gets (here, or a slot actor on a Ray node): the segment,
        its log, workdir, entrypoint and the spec's environment."""
        args = dict(self.segment)
        args.update(
            log=str(self.log_path),
            workdir=self.cwd,
            entrypoint=self.entrypoint,
            env=self.extra.get("spec_env", {}),
            header=self.header,
        )
        return args


def trial_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    env["HPD_DAEMON_PID"] = str(os.getpid())
    # "python" in a command means the daemon's own interpreter (its venv), as a user expects.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def classify_exit(code: int, log_path: Path) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals.__members__.values() else ""
        return f"killed by signal {-code} {name}".strip()
    tail = _tail(log_path)
    if "CUDA out of memory" in tail or "OutOfMemoryError" in tail:
        return f"CUDA out of memory (exit code {code})"
    return f"exit code {code}"


def _tail(path: Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _identity(pid: int) -> Identity:
    return Identity(pid, pid, procs.start_ticks(pid), procs.boot_id())


class CommandSegment:
    """One process for one segment of a ``command`` trial."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self._proc = proc
        self._log = log_path
        self.identity = _identity(proc.pid)

    @classmethod
    async def start(cls, launch: Launch, socket_path: str) -> CommandSegment:
        assert launch.command is not None
        env = dict(launch.env)
        env["HPD_SOCKET"] = socket_path
        env["HPD_SEGMENT"] = json.dumps(launch.segment)
        with open(launch.log_path, "ab") as log:
            log.write(launch.header.encode())
            log.flush()
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "hpd.trial.shim",
                    *launch.command,
                    cwd=launch.cwd,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise HpdError(f"cannot start {launch.command[0]!r}: {exc}") from exc
        return cls(proc, launch.log_path)

    async def wait(self) -> Outcome:
        code = await self._proc.wait()
        if code == 0:
            return Outcome("ok", exit_code=0)
        return Outcome("crashed", classify_exit(code, self._log), exit_code=code)

    def signal(self, sig: int) -> None:
        procs.kill_group(self.identity.pgid, sig)


class WarmWorker:
    """A process per slot that imports entrypoints once and runs segments as calls."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._proc = proc
        self._reader = reader
        self._writer = writer
        self.identity = _identity(proc.pid)
        self._next_id = 0

    @classmethod
    async def start(cls, env: Mapping[str, str], log_path: Path) -> WarmWorker:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with open(log_path, "ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "hpd.trial.warm",
                    str(child.fileno()),
                    env=dict(env),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    pass_fds=(child.fileno(),),
                    start_new_session=True,
                )
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=protocol.MAX_LINE)
        return cls(proc, reader, writer)

    @property
    def alive(self) -> bool:
        return self._proc.returncode is None

    async def run(self, launch: Launch, handler: Handler) -> Outcome:
        """Send one segment; serve its report/checkpoint requests until it answers."""
        self._next_id += 1
        run_id = self._next_id
        request = protocol.Request("run", launch.warm_args(), run_id)
        try:
            self._writer.write(protocol.encode_request(request))
            await self._writer.drain()
            return await self._serve_until(run_id, handler)
        except (ConnectionError, asyncio.IncompleteReadError, ProtocolError) as exc:
            return await self._died(str(exc))

    async def _serve_until(self, run_id: int, handler: Handler) -> Outcome:
        while True:
            line = await self._reader.readline()
            if not line:
                return await self._died("worker closed its connection")
            obj = json.loads(line)
            if "op" in obj:
                await self._answer(protocol.decode_request(line), handler)
                continue
            resp = protocol.decode_response(line)
            if resp.id != run_id:
                continue
            if resp.ok:
                return Outcome.answered(resp.result)
            return Outcome("crashed", resp.error_message)

    async def _answer(self, req: protocol.Request, handler: Handler) -> None:
        try:
            resp = protocol.Response(req.id, True, await handler(req))
        except HpdError as exc:
            resp = protocol.Response(req.id, False, None, type(exc).__name__, str(exc))
        self._writer.write(protocol.encode_response(resp))
        await self._writer.drain()

    async def _died(self, why: str) -> Outcome:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        code = await self._proc.wait()
        detail = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return Outcome("crashed", f"worker died ({detail}): {why}", code, worker_died=True)

    def signal(self, sig: int) -> None:
        procs.kill_group(self.identity.pgid, sig)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self._proc.wait()
        if self._proc.returncode is None:
            self.signal(signal.SIGKILL)
            await self._proc.wait()


class WorkerPool:
    """Warm workers keyed by the slot(s) they are pinned to; a dead one is replaced."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._workers: dict[str, WarmWorker] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, key: str, env: Callable[[], Mapping[str, str]]) -> WarmWorker:
        """The live worker for ``key``; ``env()`` is built only when one must be started."""
        worker = self._workers.get(key)
        if worker is not None and worker.alive:
            return worker
        # One lock per key: a prewarm and a launch racing for a slot start one worker, not two.
        async with self._locks.setdefault(key, asyncio.Lock()):
            worker = self._workers.get(key)
            if worker is None or not worker.alive:
                self._log_dir.mkdir(parents=True, exist_ok=True)
                safe = key.replace(":", "_").replace(",", "+")
                worker = await WarmWorker.start(env(), self._log_dir / f"worker-{safe}.log")
                self._workers[key] = worker
            return worker

    def discard(self, key: str) -> None:
        self._workers.pop(key, None)

    async def close(self) -> None:
        workers, self._workers = list(self._workers.values()), {}
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
