"""The daemon's socket server: bytes in, protocol messages to a handler, bytes out.

Owns the listening socket (a 0700 directory, a 0600 socket, a symlink refused), the peer-uid
check on every connection (SO_PEERCRED), framing limits, idle timeouts and the listen backlog.
Must never hold logic about experiments; the handler does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hpd.core import protocol
from hpd.errors import HpdError, ProtocolError

logger = logging.getLogger(__name__)

Handler = Callable[[protocol.Request], Awaitable[Any]]
BACKLOG = 4096  # bursts of a thousand clients must not be dropped (the default is 100)


def prepare_socket_path(path: Path) -> None:
    """Create the 0700 directory; remove a stale socket; refuse anything else at the path."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path.parent)
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid():
        raise HpdError(f"{path.parent} is not a directory owned by this user")
    os.chmod(path.parent, 0o700)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise HpdError(f"refusing to use {path}: it is a symbolic link")
    if not stat.S_ISSOCK(st.st_mode):
        raise HpdError(f"refusing to use {path}: it exists and is not a socket")
    # We hold the state dir's lock, so a socket left here belongs to a dead daemon.
    path.unlink()


def listen(path: Path) -> socket.socket:
    prepare_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class Server:
    def __init__(self, path: Path, handler: Handler, *, idle_timeout: float = 600.0) -> None:
        self.path = path
        self._handler = handler
        self._idle = idle_timeout
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        sock = listen(self.path)
        # asyncio calls listen() again with its own backlog (default 100): pass ours.
        self._server = await asyncio.start_unix_server(
            self._serve, sock=sock, limit=protocol.MAX_LINE + 1, backlog=BACKLOG
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            sock = writer.get_extra_info("socket")
            if peer_uid(sock) != os.getuid():
                await self._send_error(writer, 0, "forbidden", "connection refused: wrong user")
                return
            await self._loop(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                async with asyncio.timeout(self._idle):
                    line = await reader.readline()
            except TimeoutError:
                return  # idle connections are closed; clients reconnect
            except (ValueError, asyncio.LimitOverrunError):
                await self._send_error(writer, 0, "too_large", "message exceeds 1 MiB; closing")
                return
            if not line:
                return  # EOF, or half-closed by the peer
            try:
                req = protocol.decode_request(line)
            except ProtocolError as exc:
                await self._send_error(writer, 0, "bad_request", str(exc))
                return
            writer.write(await self._dispatch(req))
            await writer.drain()

    async def _dispatch(self, req: protocol.Request) -> bytes:
        try:
            result = await self._handler(req)
            return protocol.encode_response(protocol.Response(req.id, True, result))
        except HpdError as exc:
            code = getattr(exc, "code", None) or type(exc).__name__
            return protocol.encode_response(protocol.Response(req.id, False, None, code, str(exc)))
        except Exception as exc:
            logger.exception("internal error handling %s", req.op)
            msg = f"internal error: {type(exc).__name__}: {exc}"
            return protocol.encode_response(protocol.Response(req.id, False, None, "internal", msg))

    async def _send_error(
        self, writer: asyncio.StreamWriter, req_id: int, code: str, message: str
    ) -> None:
        writer.write(
            protocol.encode_response(protocol.Response(req_id, False, None, code, message))
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
