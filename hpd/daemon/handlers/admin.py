"""The requests about the daemon itself: ping, daemon (its facts), stop.

Handed the layout, the daemon's state, its slots and a way to ask it to stop; never imports the
daemon.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from hpd.daemon.router import Handler
from hpd.daemon.state import DaemonState, Slots
from hpd.io.paths import Layout
from hpd.version import __version__


class AdminHandlers:
    def __init__(
        self, layout: Layout, state: DaemonState, slots: Slots, stop: Callable[[], None]
    ) -> None:
        self.layout, self.state, self.slots, self._stop = layout, state, slots, stop

    def routes(self) -> dict[str, Handler]:
        return {"ping": self.ping, "daemon": self.daemon, "stop": self.stop}

    async def ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": __version__}

    async def daemon(self) -> dict[str, Any]:
        table = self.slots.table
        return {
            "pid": os.getpid(),
            "version": __version__,
            "state_dir": str(self.layout.state),
            "socket": str(self.layout.socket),
            "slots": len(table.gpu_slots) + len(table.cpu_slots),
            "free_slots": len(table.free),
            "running": len(self.state.running),
            "degraded": self.state.degraded,
            "nodes": self._nodes(),
        }

    def _nodes(self) -> list[dict[str, Any]]:
        """Slots by Ray node (``--ray``); empty on one machine."""
        table, by_node = self.slots.table, self.slots.nodes
        out: dict[str, dict[str, Any]] = {}
        for slot in table.gpu_slots + table.cpu_slots:
            label = by_node.get(slot.name)
            if label is None:
                continue
            node = out.setdefault(label, {"node": label, "gpu_slots": 0, "cpu_slots": 0, "busy": 0})
            node["gpu_slots" if slot.gpu is not None else "cpu_slots"] += 1
            node["busy"] += slot not in table.free
        return list(out.values())

    async def stop(self) -> dict[str, Any]:
        # After the answer is written: the client hears "stopping" before the socket closes.
        asyncio.get_running_loop().call_soon(self._stop)
        return {"stopping": True}
