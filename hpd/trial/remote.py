"""A slot on a Ray cluster, in its own process there: the warm worker's loop as a Ray actor.

``SlotActor`` is wrapped with ``ray.remote`` by the daemon (``hpd.io.raycluster``) and runs in a
Ray worker process on a node: an entrypoint's module is imported once per actor (the warm
worker's ``run_segment``), a command runs as its own process of the actor (``hpd.trial.shim``,
as locally) whose ``hpd.trial.context()`` talks to a relay socket here. A segment runs on a
thread of the actor while ``run``, a streaming generator, carries its requests (reports,
checkpoints) to the daemon and finally its answer; the daemon's replies come back through
``reply``. Imports no Ray itself (the daemon passes the node id), so the trial API stays light.
Must never touch the database or decide anything.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hpd.core import protocol
from hpd.errors import RemoteError
from hpd.trial import warm


class _Waiting:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: tuple[bool, Any, str, str] | None = None


class ActorChannel:
    """``Channel.call`` for a trial inside an actor: the request goes out through the segment's
    generator, and the call blocks until the daemon's ``reply`` arrives."""

    def __init__(self, outbox: queue.SimpleQueue[dict[str, Any]]) -> None:
        self._outbox = outbox
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Waiting] = {}
        self._lock = threading.Lock()

    def call(self, op: str, **args: Any) -> Any:
        req_id = next(self._ids)
        waiting = _Waiting()
        with self._lock:
            self._waiting[req_id] = waiting
        self._outbox.put({"op": op, "args": args, "id": req_id})
        waiting.done.wait()
        assert waiting.reply is not None
        ok, result, code, message = waiting.reply
        if not ok:
            raise RemoteError(code, message)
        return result

    def deliver(self, req_id: int, ok: bool, result: Any, code: str, message: str) -> None:
        with self._lock:
            waiting = self._waiting.pop(req_id, None)
        if waiting is not None:
            waiting.reply = (ok, result, code, message)
            waiting.done.set()

    def close(self) -> None:
        """Release every caller still waiting (the segment is over)."""
        with self._lock:
            pending, self._waiting = list(self._waiting.values()), {}
        for waiting in pending:
            waiting.reply = (False, None, "ConnectionError", "the segment ended")
            waiting.done.set()


class SlotActor:
    """One slot's process on the cluster. Wrapped with ``ray.remote`` by ``Cluster``."""

    def __init__(self, env: Mapping[str, str], node_id: str) -> None:
        os.environ.update(env)
        self._node_id = node_id
        # By run: a finished run's generator may be closed after the next run has begun.
        self._channels: dict[int, ActorChannel] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    def where(self) -> dict[str, Any]:
        return {
            "node_id": self._node_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        }

    def run(self, run_id: int, segment: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """A streaming generator: the trial's requests while it runs, then its answer."""
        segment["header"] = self._header(segment.get("header", ""))
        outbox: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        channel = ActorChannel(outbox)
        self._channels[run_id] = channel
        work = self._run_command if segment.get("command") else self._run_entrypoint
        thread = threading.Thread(target=work, args=(segment, channel, outbox), daemon=True)
        thread.start()
        try:
            while True:
                msg = outbox.get()
                yield msg
                if "op" not in msg:
                    return
        finally:
            channel.close()
            self._channels.pop(run_id, None)

    def _header(self, header: str) -> str:
        # The daemon's lease names no real GPU: say where the segment really runs.
        head, sep, _ = header.rpartition(" CUDA_VISIBLE_DEVICES=")
        if not sep:
            return header
        cuda = os.environ.get("CUDA_VISIBLE_DEVICES") or "(none)"
        return f"{head} node {self._node_id[:8]}, CUDA_VISIBLE_DEVICES={cuda}\n"

    def reply(self, run_id: int, req_id: int, ok: bool, result: Any, code: str, msg: str) -> None:
        channel = self._channels.get(run_id)
        if channel is not None:
            channel.deliver(req_id, ok, result, code, msg)

    def interrupt(self) -> None:
        """SIGTERM's meaning: end after the epoch in progress (a command gets the signal)."""
        warm.request_stop_all()
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)

    # -- the two kinds of trial ----------------------------------------------------------

    def _run_entrypoint(
        self,
        segment: dict[str, Any],
        channel: ActorChannel,
        outbox: queue.SimpleQueue[dict[str, Any]],
    ) -> None:
        try:
            answer = warm.run_segment(segment, channel)
        except BaseException as exc:  # the trial's own error; the actor stays warm
            outbox.put({"error": warm.summary(exc)})
        else:
            outbox.put({"answer": answer})
        finally:
            warm.clean_up_finished()

    def _run_command(
        self,
        segment: dict[str, Any],
        channel: ActorChannel,
        outbox: queue.SimpleQueue[dict[str, Any]],
    ) -> None:
        """The command as a process of this actor, as ``hpd.trial.shim`` runs it locally; its
        ``hpd.trial.context()`` talks to a socket here that relays to the daemon."""
        try:
            with _relay(channel) as sock_path:
                env = dict(segment["process_env"])
                env.update(
                    HPD_SOCKET=sock_path,
                    HPD_SEGMENT=json.dumps(segment["segment"]),
                    # Ray pinned this actor to its GPU; the daemon's lease names no real one.
                    CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                )
                env.pop("HPD_DAEMON_PID", None)  # the daemon is not on this node
                code = self._spawn(segment, env)
        except BaseException as exc:
            outbox.put({"error": f"{type(exc).__name__}: {exc}"[:2000]})
            return
        if code == 0:
            outbox.put({"answer": {}})
        else:
            outbox.put({"error": f"exit code {code}" if code > 0 else f"killed by signal {-code}"})

    def _spawn(self, segment: dict[str, Any], env: dict[str, str]) -> int:
        log_path = Path(segment["log"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(segment.get("header", "").encode())
            log.flush()
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "hpd.trial.shim", *segment["command"]],
                cwd=segment["workdir"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            return self._proc.wait()
        finally:
            self._proc = None


@contextlib.contextmanager
def _relay(channel: ActorChannel) -> Iterator[str]:
    """A unix socket in a private directory: each request line a command trial sends is
    passed to the daemon through ``channel``, and its answer sent back."""
    with tempfile.TemporaryDirectory(prefix="hpd-relay-") as tmp:
        path = f"{tmp}/s"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen()
        accepting = threading.Thread(target=_accept, args=(server, channel), daemon=True)
        accepting.start()
        try:
            yield path
        finally:
            server.close()


def _accept(server: socket.socket, channel: ActorChannel) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return  # closed: the segment is over
        threading.Thread(target=_serve_relay, args=(conn, channel), daemon=True).start()


def _serve_relay(conn: socket.socket, channel: ActorChannel) -> None:
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            req = protocol.decode_request(line)
            try:
                resp = protocol.Response(req.id, True, channel.call(req.op, **req.args))
            except RemoteError as exc:
                resp = protocol.Response(req.id, False, None, exc.code, str(exc))
            conn.sendall(protocol.encode_response(resp))
