"""Segments as real processes: warm workers for ``entrypoint`` trials, one process per segment
for ``command`` trials (``hpd.daemon.workers`` holds both kinds).

Owns which process runs a segment and the environment it gets (the lease's GPU, the daemon's
socket). The engine decides what runs and records it; this module must never touch the store.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from hpd.core.experiment import Experiment
from hpd.daemon.ports import Prepared, Started
from hpd.daemon.router import Handler
from hpd.daemon.state import Running
from hpd.daemon.workers import (
    CommandSegment,
    Launch,
    Outcome,
    WarmWorker,
    WorkerPool,
    trial_environment,
)
from hpd.io.gpus import Lease


class ProcessLauncher:
    def __init__(self, socket_path: Path, workers_dir: Path, handler: Handler) -> None:
        self._socket = str(socket_path)
        self._handler = handler  # answers what a warm worker's trial asks mid-segment
        self.pool = WorkerPool(workers_dir)

    async def prepare(self, exp: Experiment, lease: Lease) -> Prepared:
        if not exp.spec.entrypoint:
            return Prepared()
        worker = await self._worker(lease)
        return Prepared(worker.identity, worker)

    async def run(
        self, run: Running, launch: Launch, prepared: Prepared, started: Started
    ) -> Outcome:
        if isinstance(prepared.worker, WarmWorker):
            run.proc = prepared.worker
            return await prepared.worker.run(launch, self._handler)
        proc = await CommandSegment.start(launch, self._socket)
        run.proc = proc
        await started(proc.identity)
        return await proc.wait()

    async def prewarm(self, exp: Experiment, leases: Sequence[Lease]) -> None:
        for lease in leases:
            with contextlib.suppress(Exception):  # a failure here is retried at launch
                await self._worker(lease)

    def discard(self, lease: Lease) -> None:
        self.pool.discard(lease.label)

    async def close(self) -> None:
        await self.pool.close()

    async def _worker(self, lease: Lease) -> WarmWorker:
        def env() -> dict[str, str]:
            out = trial_environment(os.environ, lease.environment())
            out["HPD_SOCKET"] = self._socket
            return out

        return await self.pool.get(lease.label, env)
