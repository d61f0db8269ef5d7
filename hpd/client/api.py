"""Clients of the daemon: ``Client`` (blocking) and ``AsyncClient`` (asyncio), one surface.

Owns the request/response round trip over the local socket and the ``Experiment`` handle that
``submit`` returns. Used by the CLI, the TUI and scripts. Must never open the database; ask
the daemon.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpd.core import protocol
from hpd.core.lifecycle import FINAL_EXPERIMENT_STATES
from hpd.errors import DaemonNotRunning, RemoteError
from hpd.io.channel import Channel
from hpd.io.paths import Layout, layout

FINAL = FINAL_EXPERIMENT_STATES  # an experiment in one of these states has ended


def _spec_payload(spec: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A spec dict to send: files are parsed here so errors name the file's fields."""
    if isinstance(spec, Mapping):
        return {"spec": dict(spec), "base_dir": os.getcwd()}
    from hpd.core.spec import load_spec_file, spec_to_dict

    path = Path(spec).resolve()
    return {"spec": spec_to_dict(load_spec_file(str(path))), "base_dir": str(path.parent)}


def _retrain_args(top: int, epochs: int, metric: str | None, mode: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"top": top, "epochs": epochs}
    if metric is not None:
        args["metric"] = metric
    if mode is not None:
        args["mode"] = mode
    return args


class Client:
    """Blocking client: ``hpd.Client().submit(spec).wait()``."""

    def __init__(
        self, state_dir: str | os.PathLike[str] | None = None, *, timeout: float = 60
    ) -> None:
        self.layout: Layout = layout(state_dir)
        self._timeout = timeout
        self._channel = Channel(self._connect)

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self._timeout)
        try:
            s.connect(str(self.layout.socket))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            s.close()
            raise DaemonNotRunning(
                f"no hpd daemon answers on {self.layout.socket} (start one with `hpd start`)"
            ) from exc
        return s

    def call(self, op: str, **args: Any) -> Any:
        return self._channel.call(op, **args)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def ping(self) -> dict[str, Any]:
        return self.call("ping")  # type: ignore[no-any-return]

    def submit(self, spec: Mapping[str, Any] | str | os.PathLike[str]) -> Experiment:
        exp_id = self.call("submit", **_spec_payload(spec))["id"]
        return Experiment(self, int(exp_id))

    def experiment(self, exp_id: int) -> Experiment:
        return Experiment(self, exp_id)

    def experiments(self) -> list[dict[str, Any]]:
        return self.call("ls")  # type: ignore[no-any-return]


class Experiment:
    """A submitted search, as seen through a ``Client``."""

    def __init__(self, client: Client, exp_id: int) -> None:
        self.client = client
        self.id = exp_id

    def __repr__(self) -> str:
        return f"Experiment({self.id})"

    def status(self) -> dict[str, Any]:
        return self.client.call("status", exp=self.id)  # type: ignore[no-any-return]

    def trials(self) -> list[dict[str, Any]]:
        return self.client.call("trials", exp=self.id)  # type: ignore[no-any-return]

    def best(self) -> dict[str, Any] | None:
        return self.client.call("best", exp=self.id)  # type: ignore[no-any-return]

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        return self.client.call("events", exp=self.id, after=after)  # type: ignore[no-any-return]

    def ladder(self) -> list[dict[str, Any]]:
        return self.client.call("ladder", exp=self.id)  # type: ignore[no-any-return]

    def pause(self) -> dict[str, Any]:
        return self.client.call("pause", exp=self.id)  # type: ignore[no-any-return]

    def resume(self) -> dict[str, Any]:
        return self.client.call("resume", exp=self.id)  # type: ignore[no-any-return]

    def cancel(self) -> dict[str, Any]:
        return self.client.call("cancel", exp=self.id)  # type: ignore[no-any-return]

    def export(self, format: str = "json") -> Any:
        return self.client.call("export", exp=self.id, format=format)

    def retrain(
        self, top: int, epochs: int, metric: str | None = None, mode: str | None = None
    ) -> Experiment:
        """Train this finished search's ``top`` best configurations for ``epochs`` epochs on
        the full data, as a new experiment linked to this one."""
        args = _retrain_args(top, epochs, metric, mode)
        return Experiment(self.client, int(self.client.call("retrain", exp=self.id, **args)["id"]))

    def retrained(self) -> dict[str, Any]:
        """This retraining's header (``parent``, ``metric``, ``epochs``...) and its ``rows``."""
        return self.client.call("retrained", exp=self.id)  # type: ignore[no-any-return]

    def retrain_results(self) -> list[dict[str, Any]]:
        """One row per retrained configuration, beside the search result that chose it."""
        return self.retrained()["rows"]  # type: ignore[no-any-return]

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the experiment is completed, failed or cancelled; returns its status.

        The daemon answers when the experiment ends (a long poll), so waiting costs nothing.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 30.0 if deadline is None else max(0.0, deadline - time.monotonic())
            st: dict[str, Any] = self.client.call("wait", exp=self.id, timeout=min(30.0, left))
            if st["state"] in FINAL:
                return st
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"experiment {self.id} still {st['state']} after {timeout} s")


class AsyncClient:
    """The same surface as ``Client`` for asyncio code (the TUI uses it)."""

    def __init__(self, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.layout: Layout = layout(state_dir)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._next = 0

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    str(self.layout.socket), limit=protocol.MAX_LINE + 1
                )
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise DaemonNotRunning(f"no hpd daemon answers on {self.layout.socket}") from exc
        return self._reader, self._writer

    async def call(self, op: str, **args: Any) -> Any:
        async with self._lock:
            for attempt in (0, 1):
                try:
                    return await self._call_once(op, args)
                except (ConnectionError, asyncio.IncompleteReadError):
                    await self.close()
                    if attempt:
                        raise DaemonNotRunning("the daemon closed the connection") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_once(self, op: str, args: dict[str, Any]) -> Any:
        reader, writer = await self._open()
        self._next += 1
        req_id = self._next
        try:
            writer.write(protocol.encode_request(protocol.Request(op, args, req_id)))
            await writer.drain()
            line = await reader.readline()
        except asyncio.CancelledError:
            # The reply to this request may still arrive; a fresh connection cannot mix it up
            # with the next call's.
            await self.close()
            raise
        if not line:
            raise ConnectionError("closed")
        resp = protocol.decode_response(line)
        if resp.id not in (req_id, 0):  # 0: the server could not read our id
            await self.close()
            raise ConnectionError(f"reply {resp.id} does not answer request {req_id}")
        if not resp.ok:
            raise RemoteError(resp.error_code, resp.error_message)
        return resp.result

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def submit(self, spec: Mapping[str, Any] | str | os.PathLike[str]) -> AsyncExperiment:
        result = await self.call("submit", **_spec_payload(spec))
        return AsyncExperiment(self, int(result["id"]))

    def experiment(self, exp_id: int) -> AsyncExperiment:
        return AsyncExperiment(self, exp_id)

    async def experiments(self) -> list[dict[str, Any]]:
        return await self.call("ls")  # type: ignore[no-any-return]


class AsyncExperiment:
    def __init__(self, client: AsyncClient, exp_id: int) -> None:
        self.client = client
        self.id = exp_id

    async def status(self) -> dict[str, Any]:
        return await self.client.call("status", exp=self.id)  # type: ignore[no-any-return]

    async def trials(self) -> list[dict[str, Any]]:
        return await self.client.call("trials", exp=self.id)  # type: ignore[no-any-return]

    async def best(self) -> dict[str, Any] | None:
        return await self.client.call("best", exp=self.id)  # type: ignore[no-any-return]

    async def events(self, after: int = 0) -> list[dict[str, Any]]:
        return await self.client.call("events", exp=self.id, after=after)  # type: ignore[no-any-return]

    async def ladder(self) -> list[dict[str, Any]]:
        return await self.client.call("ladder", exp=self.id)  # type: ignore[no-any-return]

    async def pause(self) -> dict[str, Any]:
        return await self.client.call("pause", exp=self.id)  # type: ignore[no-any-return]

    async def resume(self) -> dict[str, Any]:
        return await self.client.call("resume", exp=self.id)  # type: ignore[no-any-return]

    async def cancel(self) -> dict[str, Any]:
        return await self.client.call("cancel", exp=self.id)  # type: ignore[no-any-return]

    async def export(self, format: str = "json") -> Any:
        return await self.client.call("export", exp=self.id, format=format)

    async def retrain(
        self, top: int, epochs: int, metric: str | None = None, mode: str | None = None
    ) -> AsyncExperiment:
        args = _retrain_args(top, epochs, metric, mode)
        result = await self.client.call("retrain", exp=self.id, **args)
        return AsyncExperiment(self.client, int(result["id"]))

    async def retrained(self) -> dict[str, Any]:
        return await self.client.call("retrained", exp=self.id)  # type: ignore[no-any-return]

    async def retrain_results(self) -> list[dict[str, Any]]:
        return (await self.retrained())["rows"]  # type: ignore[no-any-return]

    async def wait(self, timeout: float | None = None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = 30.0 if deadline is None else max(0.0, deadline - loop.time())
            st: dict[str, Any] = await self.client.call(
                "wait", exp=self.id, timeout=min(30.0, left)
            )
            if st["state"] in FINAL:
                return st
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"experiment {self.id} still {st['state']} after {timeout} s")
