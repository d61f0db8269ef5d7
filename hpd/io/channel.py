"""``Channel``: a blocking request/response connection to the daemon over a unix socket.

Owns the client side of the wire (one request, one response line, one retry on a broken
connection) for everything that talks to the daemon without asyncio: the CLI's ``Client``, a
trial process and the warm worker. Must never interpret answers beyond ``ok`` or an error.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any, Protocol

from hpd.core import protocol
from hpd.errors import ProtocolError, RemoteError


class Caller(Protocol):
    """What a trial needs of its way to the daemon: one blocking request, its answer or a
    ``RemoteError`` (a ``Channel`` here; a Ray slot's relay on a cluster)."""

    def call(self, op: str, **args: Any) -> Any: ...


class Channel:
    """A blocking request/response connection to the daemon (a unix socket or socketpair)."""

    def __init__(self, connect: Callable[[], socket.socket]) -> None:
        self._connect = connect
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next_id = 0

    def call(self, op: str, **args: Any) -> Any:
        # One retry on a broken connection: the daemon times idle connections out, and a
        # long epoch is idle as far as the socket is concerned.
        for attempt in (0, 1):
            try:
                return self._call_once(op, args)
            except (ConnectionError, BrokenPipeError, OSError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(self, op: str, args: dict[str, Any]) -> Any:
        if self._sock is None:
            self._sock = self._connect()
            self._buf = b""
        self._next_id += 1
        self._sock.sendall(protocol.encode_request(protocol.Request(op, args, self._next_id)))
        resp = protocol.decode_response(self._readline())
        if resp.id not in (self._next_id, 0):  # 0: the server could not read our id
            raise ConnectionError(f"reply {resp.id} does not answer request {self._next_id}")
        if not resp.ok:
            raise RemoteError(resp.error_code, resp.error_message)
        return resp.result

    def recv_line(self) -> bytes:
        """The next line from the daemon (the warm worker reads its 'run' requests here)."""
        if self._sock is None:
            self._sock = self._connect()
        return self._readline()

    def _readline(self) -> bytes:
        assert self._sock is not None
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            self._buf += chunk
            if len(self._buf) > protocol.MAX_LINE:
                raise ProtocolError("response too large")
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def unix_connector(path: str) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        return s

    return connect
