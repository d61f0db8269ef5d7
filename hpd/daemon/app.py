"""The daemon's lifecycle: wires store, slots, engine, handlers, router and server, and runs them.

Owns what happens once per daemon: one instance per state dir (an flock), the crash-only start
(recovery before anything is served), the background tasks (the scheduler, the clock's tick,
GPU sampling), signals, and the graceful stop (segments checkpoint and resume at the next
start). Everything a request or a segment does is the engine's or a handler's. Must never run
SQL itself, call NVML directly (``hpd.io.gpus`` does) or parse specs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from hpd.daemon.engine import Engine
from hpd.daemon.handlers.admin import AdminHandlers
from hpd.daemon.handlers.control import ControlHandlers
from hpd.daemon.handlers.queries import QueryHandlers
from hpd.daemon.handlers.trials import TrialHandlers
from hpd.daemon.launcher import ProcessLauncher
from hpd.daemon.ports import Launcher
from hpd.daemon.recovery import recover
from hpd.daemon.router import Router
from hpd.daemon.server import Server
from hpd.daemon.state import Config, DaemonState, Ids, Slots
from hpd.errors import HpdError, StoreError
from hpd.io import gpus
from hpd.io.store import Store, next_ids
from hpd.version import __version__

logger = logging.getLogger(__name__)

TICK_S = 0.5  # how often the clock is consulted (timeouts, the grace before SIGKILL, backoffs)


class AlreadyRunning(HpdError):
    """Another daemon holds this state dir."""


class Daemon:
    def __init__(self, config: Config) -> None:
        self.cfg = config
        self.layout = dataclasses.replace(config.layout, trials_root=config.checkpoint_root)
        self.clock = config.clock
        self.state = DaemonState()
        self.router = Router()
        self.server = Server(
            self.layout.socket, self.router.handle, idle_timeout=config.idle_timeout_s
        )
        self.launcher: Launcher = ProcessLauncher(
            self.layout.socket, self.layout.state / "workers", self.router.handle
        )
        self.cluster: Any = None  # hpd.daemon.ray_backend's cluster, with --ray
        self._stopping = asyncio.Event()
        self._lock_fd: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.probe: gpus.GpuProbe | None = None
        self._engine: Engine | None = None

    def acquire_lock(self) -> None:
        self.layout.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.layout.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(f"hpd is already running on {self.layout.state}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        self.acquire_lock()
        # The slots first: a cluster that cannot be joined leaves no database behind.
        slots = await self._ray_slots() if self.cfg.ray else self._slots()
        store = await Store.open(self.layout.db)
        try:
            engine = await self._start(store, slots)
            if on_ready:
                on_ready()
            await self._stopping.wait()
            await self._shutdown(engine)
        finally:
            await store.close()

    def stop(self) -> None:
        """Begin the graceful stop: no segment starts from now on."""
        if self._engine is not None:
            self._engine.stopping = True
        self._stopping.set()

    async def _start(self, store: Store, slots: Slots) -> Engine:
        ids = await next_ids(store)
        self.state.ids = Ids(ids["experiments"], ids["trials"], ids["attempts"])
        engine = Engine(
            store=store,
            state=self.state,
            slots=slots,
            layout=self.layout,
            launcher=self.launcher,
            clock=self.clock,
            grace_s=self.cfg.grace_s,
        )
        self._engine = engine
        self._route(store, engine, slots)
        await recover(engine)
        await self.server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        self._tasks = [
            asyncio.create_task(engine.run_scheduler(), name="scheduler"),
            asyncio.create_task(_ticker(engine), name="tick"),
            asyncio.create_task(self._watch(slots, engine), name="gpu_sampler"),
        ]
        logger.info(
            "hpd %s ready on %s (%d slots)", __version__, self.layout.socket, len(slots.table.free)
        )
        return engine

    def _slots(self) -> Slots:
        self.probe = gpus.probe_from_env(self.cfg.gpus)
        chosen = gpus.parse_gpu_selection(self.cfg.gpus)
        found = self.probe.list() if self.probe else []
        infos = [g for g in found if chosen is None or g.index in chosen]
        cpu = self.cfg.cpu_slots or (os.cpu_count() or 1)
        table = gpus.SlotTable.build(infos, slots_per_gpu=self.cfg.slots_per_gpu, cpu_slots=cpu)
        return Slots(table, {g.uuid: g for g in infos})

    async def _ray_slots(self) -> Slots:
        """Join the cluster, check the checkpoint root from every node, and make its slots."""
        from hpd.daemon import ray_backend

        assert self.cfg.ray is not None
        cluster, slots, placed = await asyncio.to_thread(
            ray_backend.join,
            self.cfg.ray,
            self.layout.trials_root or self.layout.state,
            slots_per_gpu=self.cfg.slots_per_gpu,
            cpu_slots=self.cfg.cpu_slots,
        )
        self.cluster = (cluster, placed)
        self.launcher = ray_backend.RayLauncher(cluster, placed, self.router.handle)
        return slots

    async def _watch(self, slots: Slots, engine: Engine) -> None:
        if self.cluster is None:
            return await self._sample_gpus(slots)
        from hpd.daemon import ray_backend

        cluster, placed = self.cluster
        await ray_backend.watch_nodes(
            cluster,
            slots,
            placed,
            slots_per_gpu=self.cfg.slots_per_gpu,
            cpu_slots=self.cfg.cpu_slots,
            on_change=engine.wake,
        )

    def _route(self, store: Store, engine: Engine, slots: Slots) -> None:
        for handlers in (
            AdminHandlers(self.layout, self.state, slots, self.stop),
            ControlHandlers(store, self.state, engine, self.clock),
            QueryHandlers(store, self.state, slots, self.layout, self.clock),
            TrialHandlers(store, self.state, self.layout, self.clock),
        ):
            self.router.include(handlers.routes())

    async def _shutdown(self, engine: Engine) -> None:
        """Graceful: running trials get SIGTERM, checkpoint, and resume at the next start."""
        engine.stopping = True
        logger.info("stopping: %d segments to checkpoint", len(self.state.running))
        for run in list(self.state.running.values()):
            engine.request_stop(run, "shutdown")
        pending = [r.task for r in self.state.running.values() if r.task]
        if pending:
            await asyncio.wait(pending, timeout=self.cfg.grace_s + 5)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await engine.flush_deferred()
        except StoreError as exc:  # recovery will find those trials running and resume them
            logger.error("could not record the last segments' ends: %s", exc)
        logger.info("stopping: closing workers")
        await self.launcher.close()
        await self.server.close()
        if self.probe:
            self.probe.close()
        logger.info("stopped")

    async def _sample_gpus(self, slots: Slots) -> None:
        while True:
            if self.probe is not None:
                if isinstance(self.probe, gpus.FakeProbe):
                    self.probe.busy = slots.table.busy_by_gpu()
                try:
                    infos = await asyncio.to_thread(self.probe.list)
                    slots.samples = {g.uuid: g for g in infos}
                except Exception:
                    logger.warning("GPU sampling failed", exc_info=True)
            await asyncio.sleep(self.cfg.gpu_sample_s)


async def _ticker(engine: Engine) -> None:
    """The clock's tick; the timeouts themselves are read from the injected clock."""
    while True:
        await asyncio.sleep(TICK_S)
        engine.tick()


def _dump_tasks() -> None:
    """SIGUSR1: log every asyncio task's stack (to see what a stuck daemon waits on)."""
    import io

    for task in asyncio.all_tasks():
        buf = io.StringIO()
        task.print_stack(file=buf)
        logger.warning("task %s:\n%s", task.get_name(), buf.getvalue())


def notify_ready() -> None:
    """sd_notify READY=1 for systemd's Type=notify (a few lines of stdlib, no dependency)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(b"READY=1")


def serve_forever(cfg: Config) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT or `hpd stop`."""
    logging.basicConfig(
        level=os.environ.get("HPD_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    daemon = Daemon(cfg)
    profile = os.environ.get("HPD_PROFILE")  # for developers: cProfile stats written at exit
    if not profile:
        asyncio.run(daemon.run(on_ready=notify_ready))
        return
    import cProfile

    with cProfile.Profile() as prof:
        asyncio.run(daemon.run(on_ready=notify_ready))
    prof.dump_stats(profile)
