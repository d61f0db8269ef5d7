"""``Source``: the part of ``hpd.client.AsyncClient`` the TUI uses.

The app is written against this protocol so tests can hand it ``tui.testing.FakeClient``
(fixed data, deterministic snapshots) instead of a socket client.
"""

from __future__ import annotations

from typing import Any, Protocol


class Source(Protocol):
    async def call(self, op: str, **args: Any) -> Any:
        """One request to the daemon; raises ``hpd.errors.DaemonNotRunning`` when it is away."""
        ...

    async def submit(self, spec: str) -> Any:
        """Submit a spec file (path); returns an object with an ``id``."""
        ...

    async def close(self) -> None: ...
