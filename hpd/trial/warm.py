"""The warm worker: one long-lived process per slot that runs ``entrypoint`` segments as calls.

``python -m hpd.trial.warm FD``: FD is a connected socket to the daemon. The worker imports each
entrypoint module once (with the spec's workdir on sys.path) and then runs every segment sent
to it as a function call, so a segment starts in milliseconds instead of the seconds a fresh
Python + torch + CUDA process takes. Each segment's stdout/stderr go to that trial's log.
The answer to a 'run' carries the segment's last reports and an inline checkpoint of its last
epoch, saving a round trip and a commit per segment (``TrialContext.end``).
A crash of the worker fails only the segment it was running; the daemon starts a new worker.
Must never touch the database or GPUs directly.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from hpd.core import protocol
from hpd.io.channel import Caller, Channel
from hpd.io.procs import exit_if_orphaned, set_parent_death_signal
from hpd.trial import TrialContext

_functions: dict[tuple[str, str], Callable[[TrialContext], Any]] = {}
_current: list[TrialContext] = []
_finished: list[TrialContext] = []


def load_entrypoint(workdir: str, entrypoint: str) -> Callable[[TrialContext], Any]:
    key = (workdir, entrypoint)
    fn = _functions.get(key)
    if fn is None:
        if workdir not in sys.path:
            sys.path.insert(0, workdir)
        module_name, _, attr = entrypoint.partition(":")
        module = importlib.import_module(module_name)
        fn = getattr(module, attr)
        if not callable(fn):
            raise TypeError(f"entrypoint {entrypoint!r} is not callable")
        _functions[key] = fn
    return fn


@contextlib.contextmanager
def _output_to(path: str, header: str) -> Iterator[None]:
    """Point fds 1 and 2 at the trial's log for the duration of one segment."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:  # the trial's first segment: the daemon leaves its dir to us
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, flags, 0o600)
    if header:
        os.write(fd, header.encode())
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


@contextlib.contextmanager
def _environment(env: dict[str, str], cwd: str) -> Iterator[None]:
    old_env = {k: os.environ.get(k) for k in env}
    old_cwd = os.getcwd()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_segment(seg: dict[str, Any], channel: Caller) -> dict[str, Any]:
    """Run one segment; the answer carries its last reports and inline checkpoint, if any."""
    ctx = TrialContext(seg, channel, end_with_answer=True)
    _finished.append(ctx)  # cleaned up once the daemon has its answer, even if fn raised
    _current.append(ctx)
    try:
        with (
            _output_to(seg["log"], seg.get("header", "")),
            _environment(seg.get("env", {}), seg["workdir"]),
        ):
            try:
                fn = load_entrypoint(seg["workdir"], seg["entrypoint"])
                fn(ctx)
            except BaseException:
                traceback.print_exc()
                # A checkpoint taken before the error is registered, as if it had not waited.
                with contextlib.suppress(Exception):
                    ctx.flush()
                raise
    finally:
        _current.pop()
    return {"status": "interrupted" if ctx.stopped_early else "ok", **ctx.end()}


def request_stop_all() -> None:
    """SIGTERM's meaning: the segment in progress ends after its epoch (it checkpoints)."""
    for ctx in _current:
        ctx.request_stop()


def _on_sigterm(*_: object) -> None:
    request_stop_all()


def serve(sock: socket.socket) -> None:
    """Answer 'run' requests from the daemon until it closes the connection."""
    channel = Channel(lambda: sock)
    while True:
        try:
            line = channel.recv_line()
        except ConnectionError:
            return  # the daemon went away: so do we
        req = protocol.decode_request(line)
        try:
            result = run_segment(req.args, channel)
            resp = protocol.Response(req.id, True, result)
        except Exception as exc:  # the trial's own error: report it, stay warm
            resp = protocol.Response(req.id, False, None, "trial_error", summary(exc))
        sock.sendall(protocol.encode_response(resp))
        clean_up_finished()


def clean_up_finished() -> None:
    """Replaced checkpoints are deleted here, after the answer, not on the segment's end."""
    while _finished:
        with contextlib.suppress(Exception):
            _finished.pop().cleanup()


def summary(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def main() -> None:
    set_parent_death_signal()
    exit_if_orphaned(os.environ.get("HPD_DAEMON_PID"))
    signal.signal(signal.SIGTERM, _on_sigterm)
    sock = socket.socket(fileno=int(sys.argv[1]))
    with contextlib.suppress(KeyboardInterrupt):
        serve(sock)


if __name__ == "__main__":
    main()
