"""The daemon: the asyncio loop that wires store, ladder, GPUs, workers and the server.

Owns the lifecycle (single instance per state dir, crash-only start = recovery, graceful stop),
the scheduling loop (fill free slots: requeued segments first, then the ladder's decision) and
the request handlers. Every decision is persisted (one transaction) before anyone is told and
before its segment starts, so a kill at any moment loses nothing that was acknowledged. A
scheduling pass applies its decisions to the ladder as it makes them (each must see the ones
before it) and commits them together; if that commit fails they are revoked, last first. A
segment's end is deferred, and safely so: its result is durable already (it came with a
checkpoint or reports) or rides in the same transaction (a warm worker's answer), and it is
written with the next commit, which is made with, or before, any decision that could depend on
it. Must never run SQL itself (store.py does), call NVML (gpus.py) or parse specs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpd import __version__
from hpd.core import asha, protocol
from hpd.core.experiment import (
    FINAL_EXPERIMENT_STATES,
    FINAL_TRIAL_STATES,
    Experiment,
    Trial,
    model_missing,
    reason_dict,
)
from hpd.core.space import Proposal, results_of
from hpd.core.spec import parse_spec
from hpd.daemon.control import ControlOps
from hpd.daemon.queries import QueryOps
from hpd.daemon.reports import TrialOps
from hpd.daemon.server import Server
from hpd.daemon.workers import (
    CommandSegment,
    Launch,
    Outcome,
    WarmWorker,
    WorkerPool,
    trial_environment,
)
from hpd.errors import HpdError, StoreError
from hpd.io import gpus, procs
from hpd.io.paths import Layout
from hpd.io.store import (
    INLINE,
    LADDER_EVENTS,
    AttemptIn,
    AttemptUpdate,
    ExperimentState,
    NewEvent,
    Op,
    ResultIn,
    Store,
    TrialIn,
    TrialsOfExperiment,
    TrialUpdate,
    next_ids,
)

logger = logging.getLogger(__name__)


class AlreadyRunning(HpdError):
    """Another daemon holds this state dir."""


@dataclass
class Config:
    layout: Layout
    gpus: str = "auto"
    slots_per_gpu: int = 1
    cpu_slots: int = 0  # 0 = one per CPU core
    grace_s: float = 10.0
    idle_timeout_s: float = 600.0
    gpu_sample_s: float = 2.0
    clock: Callable[[], float] = time.time


@dataclass
class Running:
    """A segment in flight."""

    exp: Experiment
    trial: Trial
    attempt: int
    lease: gpus.Lease
    started: float
    last_progress: float
    proc: CommandSegment | WarmWorker | None = None
    result: float | None = None
    stop_reason: str | None = None  # pause | cancel | shutdown | timeout
    task: asyncio.Task[None] | None = None
    kill_timer: asyncio.TimerHandle | None = None


@dataclass
class Next:
    """A segment about to start: the decision's ops are committed with the attempt's."""

    trial: Trial
    rung: int
    target: int
    ops: list[Op]
    ladder_event: asha.Event | None
    requeued: bool = False
    label: str = ""


@dataclass
class Planned:
    """A launch decided and applied in memory, waiting for the commit that records it."""

    exp: Experiment
    nxt: Next
    run: Running
    saved: tuple[str, int, int, int]  # the trial's state, rung, target, attempts before
    launch: Launch | None = None
    worker: WarmWorker | None = None
    applied: bool = False  # its ladder event is applied (revoke it on undo)

    @property
    def label(self) -> str:
        return f"{self.nxt.label}+start_attempt" if self.nxt.label else "start_attempt"


@dataclass
class Ids:
    experiments: int
    trials: int
    attempts: int

    def take(self, kind: str) -> int:
        value = int(getattr(self, kind))
        setattr(self, kind, value + 1)
        return value


@dataclass
class DaemonState:
    experiments: dict[int, Experiment] = field(default_factory=dict)
    running: dict[int, Running] = field(default_factory=dict)  # by trial id
    degraded: str | None = None
    ended: asyncio.Condition = field(default_factory=asyncio.Condition)  # an experiment ended


class Daemon(ControlOps, QueryOps, TrialOps):
    def __init__(self, config: Config) -> None:
        self.cfg = config
        self.layout = config.layout
        self.clock = config.clock
        self.s = DaemonState()
        self._mutex = asyncio.Lock()  # ladder decisions + their commits happen one at a time
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._lock_fd: int | None = None
        self.store: Store
        self.slots: gpus.SlotTable
        self.probe: gpus.GpuProbe | None = None
        self.samples: dict[str, gpus.GpuInfo] = {}
        self.pool = WorkerPool(self.layout.state / "workers")
        self.server = Server(self.layout.socket, self.handle, idle_timeout=config.idle_timeout_s)
        self.ids = Ids(1, 1, 1)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._deferred: list[tuple[str, list[Op]]] = []  # writes riding with the next commit

    # == lifecycle ==========================================================================

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
        self.store = await Store.open(self.layout.db)
        try:
            await self._start()
            if on_ready:
                on_ready()
            await self._stopping.wait()
            await self._shutdown()
        finally:
            await self.store.close()

    async def _start(self) -> None:
        self.probe = gpus.probe_from_env(self.cfg.gpus)
        infos = self._select_gpus(self.probe.list() if self.probe else [])
        self.samples = {g.uuid: g for g in infos}
        cpu = self.cfg.cpu_slots or (os.cpu_count() or 1)
        self.slots = gpus.SlotTable.build(
            infos, slots_per_gpu=self.cfg.slots_per_gpu, cpu_slots=cpu
        )
        ids = await next_ids(self.store)
        self.ids = Ids(ids["experiments"], ids["trials"], ids["attempts"])
        await self._recover()
        await self.server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        self._tasks = [
            asyncio.create_task(self._scheduler(), name="scheduler"),
            asyncio.create_task(self._watchdog(), name="watchdog"),
            asyncio.create_task(self._sample_gpus(), name="gpu_sampler"),
        ]
        logger.info(
            "hpd %s ready on %s (%d slots)", __version__, self.layout.socket, len(self.slots.free)
        )

    def _select_gpus(self, infos: list[gpus.GpuInfo]) -> list[gpus.GpuInfo]:
        chosen = gpus.parse_gpu_selection(self.cfg.gpus)
        return [g for g in infos if chosen is None or g.index in chosen]

    def stop(self) -> None:
        self._stopping.set()

    async def _shutdown(self) -> None:
        """Graceful: running trials get SIGTERM, checkpoint, and resume at the next start."""
        logger.info("stopping: %d segments to checkpoint", len(self.s.running))
        for run in list(self.s.running.values()):
            self._request_stop(run, "shutdown")
        pending = [r.task for r in self.s.running.values() if r.task]
        if pending:
            await asyncio.wait(pending, timeout=self.cfg.grace_s + 5)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._flush_deferred()
        except StoreError as exc:  # recovery will find those trials running and resume them
            logger.error("could not record the last segments' ends: %s", exc)
        logger.info("stopping: closing workers")
        await self.pool.close()
        await self.server.close()
        if self.probe:
            self.probe.close()
        logger.info("stopped")

    # == recovery ===========================================================================

    async def _recover(self) -> None:
        """Starting is recovering: kill leftovers we can prove are ours, rebuild, requeue."""
        now = self.clock()
        ops: list[Op] = []
        for a in await self.store.open_attempts():
            if a.pgid and procs.is_same_process(a.pgid, a.start_ticks, a.boot_id):
                procs.kill_group(a.pgid)
            ops.append(AttemptUpdate(a.id, {"ended_at": now, "outcome": "lost"}))
        if ops:
            await self.store.commit("recover_attempts", ops)
        for row in await self.store.experiments():
            if row.state in FINAL_EXPERIMENT_STATES:
                continue
            exp = Experiment.new(
                row.id, parse_spec(json.loads(row.spec)), row.state, row.created_at
            )
            events = await self.store.events(row.id, types=LADDER_EVENTS)
            exp.replay(events, await self.store.trials(row.id))
            await self._requeue_outstanding(exp, now)
            await self._pause_if_unrunnable(exp)
            self.s.experiments[exp.id] = exp

    async def _pause_if_unrunnable(self, exp: Experiment) -> None:
        """A search whose sampler needs a package this daemon lacks waits, paused, for it."""
        missing = model_missing(exp.spec)
        if missing is None or exp.state != "running":
            return
        logger.error("experiment %d paused: %s", exp.id, missing)
        await self.store.commit(
            "pause_unrunnable",
            [
                ExperimentState(exp.id, "paused", None),
                self._event(exp.id, "experiment_paused", None, reason=missing),
            ],
        )
        exp.state = "paused"

    async def _requeue_outstanding(self, exp: Experiment, now: float) -> None:
        ops: list[Op] = []
        for t in exp.trials.values():
            if exp.ladder.state_of(t.idx) != "running":
                continue
            if t.state != "queued":
                t.state = "queued"
                ops.append(TrialUpdate(t.id, {"state": "queued"}))
                ops.append(self._event(exp.id, "segment_requeued", t.id, reason="daemon restarted"))
            exp.queue.append(t)
        if ops:
            await self.store.commit("requeue", ops)

    # == scheduling =========================================================================

    def wake(self) -> None:
        self._wake.set()

    async def _scheduler(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._fill_slots()
            except StoreError as exc:
                self._degrade(exc)
            except Exception:  # a bug must not silently stop all scheduling
                logger.exception("scheduler pass failed")
            # Woken by any slot freeing, any submit/resume, and the watchdog's tick (backoffs).
            # (Not asyncio.wait_for: on 3.11 it can swallow the cancellation at shutdown.)
            await self._wake.wait()

    def _degrade(self, exc: Exception) -> None:
        if self.s.degraded is None:
            logger.error("store failed, degraded: %s", exc)
        self.s.degraded = str(exc)

    async def _fill_slots(self) -> None:
        """Fill every free slot the ladders have work for, recorded in one commit.

        Each launch is decided and applied in memory first, so the next decision sees it;
        one transaction then records them all (with any deferred segment ends), and only then
        do the segments start. Slots that free together thus share one commit instead of
        queueing one commit each behind the mutex. If the commit fails, every launch of the
        pass is undone in reverse order (``_unplan``) and nothing started.
        """
        if self._stopping.is_set():
            return
        if self.s.degraded and not await self._store_healthy():
            return
        async with self._mutex:
            planned: list[Planned] = []
            try:
                progress = True
                while progress:  # round robin: one segment per experiment per round
                    progress = False
                    for exp in list(self.s.experiments.values()):
                        if exp.state == "running" and await self._plan_one(exp, planned):
                            progress = True
                await self._start_planned(planned)
            except BaseException:
                self._unplan(planned)
                raise
        await self._flush_deferred()  # segments ended and nothing started after them

    async def _store_healthy(self) -> bool:
        try:
            async with self._mutex:
                await self._commit("health", [])
        except StoreError:
            return False
        self.s.degraded = None
        return True

    def _running_of(self, exp: Experiment) -> int:
        return sum(1 for r in self.s.running.values() if r.exp is exp)

    async def _plan_one(self, exp: Experiment, planned: list[Planned]) -> bool:
        res = exp.spec.resources
        if self._running_of(exp) >= res.max_concurrent:
            return False
        lease = self.slots.acquire(
            res.gpus_per_trial, min_free_memory_mb=res.min_free_memory_mb, samples=self.samples
        )
        if lease is None:
            return False
        nxt = await self._next_segment(exp)
        if nxt is None:
            self.slots.release(lease)
            await self._maybe_finish(exp)
            return False
        planned.append(await self._plan_launch(exp, nxt, lease))
        return True

    async def _next_segment(self, exp: Experiment) -> Next | None:
        """The next segment: a requeued one first, else the ladder's decision (not yet applied)."""
        now = self.clock()
        for t in exp.queue:
            if t.not_before <= now:
                exp.queue.remove(t)
                return Next(t, t.rung, t.target, [], None, requeued=True)
        decision = exp.ladder.decide()
        if isinstance(decision, asha.StartNew):
            return await self._create_trial(exp, decision, now)
        if isinstance(decision, asha.Promote):
            return self._promote(exp, decision)
        return None

    async def _propose(self, exp: Experiment, index: int) -> Proposal:
        """Trial ``index``'s configuration. A model proposal runs in a worker thread on a
        snapshot of the observations: it costs tens of milliseconds at a thousand results,
        and the loop must keep serving meanwhile. A result recorded while it runs is simply
        not in its snapshot, as if it had come a moment after the decision (the decision
        stays valid: results never change which trial index starts next)."""
        if not exp.wants_model(index):
            return exp.random_proposal(index)
        observations = exp.observations()
        model = exp.model()
        if not model.ready(observations):
            return exp.random_proposal(index, startup=results_of(observations))
        proposal: Proposal = await asyncio.to_thread(model.propose, index, observations)
        return proposal

    async def _create_trial(self, exp: Experiment, d: asha.StartNew, now: float) -> Next:
        proposal = await self._propose(exp, d.trial)
        params = proposal.params
        tid = self.ids.take("trials")
        t = Trial(tid, exp.id, d.trial, d.bracket, dict(params), "queued", d.rung, d.resource)
        ops: list[Op] = [
            TrialIn(
                tid, exp.id, t.idx, t.bracket, json.dumps(params), "queued", t.rung, t.target, now
            ),
            self._event(
                exp.id,
                "trial_created",
                tid,
                index=t.idx,
                bracket=t.bracket,
                params=params,
                resource=t.target,
                proposal=proposal.info,
            ),
        ]
        return Next(t, d.rung, d.resource, ops, asha.event_for(d), label="create_trial")

    def _promote(self, exp: Experiment, d: asha.Promote) -> Next:
        t = exp.trials[d.trial]
        ops: list[Op] = [
            TrialUpdate(t.id, {"state": "queued", "rung": d.to_rung, "target": d.resource}),
            self._event(
                exp.id,
                "promoted",
                t.id,
                rung=d.from_rung,
                to_rung=d.to_rung,
                resource=d.resource,
                reason=reason_dict(d.reason),
            ),
        ]
        return Next(t, d.to_rung, d.resource, ops, asha.event_for(d), label="promote")

    async def _maybe_finish(self, exp: Experiment) -> None:
        if exp.state != "running" or exp.queue or self._running_of(exp):
            return
        if not isinstance(exp.ladder.decide(), asha.Done):
            return
        now = self.clock()
        anything = any(exp.ladder.results(t.idx) for t in exp.trials.values())
        state = "completed" if anything else "failed"
        await self._commit(
            "finish",
            [
                TrialsOfExperiment(exp.id, ("paused", "queued"), "stopped"),
                ExperimentState(exp.id, state, now),
                self._event(exp.id, f"experiment_{state}", None),
            ],
        )
        exp.state = state
        del self.s.experiments[exp.id]
        await self._notify_ended()

    async def _plan_launch(self, exp: Experiment, nxt: Next, lease: gpus.Lease) -> Planned:
        """Prepare a segment and apply its decision in memory; ``_start_planned`` records it."""
        t = nxt.trial
        saved = (t.state, t.rung, t.target, t.attempts)
        now = self.clock()
        attempt = self.ids.take("attempts")
        t.rung, t.target = nxt.rung, nxt.target
        run = Running(exp, t, attempt, lease, now, now)
        self.s.running[t.id] = run
        p = Planned(exp, nxt, run, saved)
        try:
            log = self.layout.trial_log(exp.id, t.id)
            ckpt_dir = self.layout.checkpoint_dir(exp.id, t.id)
            if t.ckpt_path == INLINE and t.ckpt_data is None:  # registered before a restart
                await self._read_inline_state(t)
            p.launch = self._launch_spec(exp, t, attempt, lease, log, str(ckpt_dir))
            if t.attempts == 0 and not exp.spec.entrypoint:
                # A command's log is opened here; a warm worker makes the trials' dir itself,
                # off the daemon's loop (mkdir costs ~0.3 ms on some filesystems).
                log.parent.mkdir(parents=True, exist_ok=True)
            p.worker = await self._worker_for(exp, lease) if exp.spec.entrypoint else None
        except BaseException:
            self._unplan([p])
            raise
        t.state, t.attempts = "running", t.attempts + 1
        if nxt.ladder_event is not None:
            exp.ladder.apply(nxt.ladder_event)
            p.applied = True
        exp.trials[t.idx] = t
        return p

    async def _start_planned(self, planned: list[Planned]) -> None:
        if not planned:
            return
        await self._commit(
            "+".join(p.label for p in planned), [op for p in planned for op in self._start_ops(p)]
        )
        started, planned[:] = list(planned), []  # recorded: nothing left to undo
        for p in started:
            assert p.launch is not None
            p.run.task = asyncio.create_task(
                self._run_segment(p.run, p.launch, p.worker), name=f"trial:{p.run.trial.id}"
            )

    def _unplan(self, planned: list[Planned]) -> None:
        """Nothing was recorded (disk full?): undo the launches in memory, the last first."""
        for p in reversed(planned):
            t, exp = p.run.trial, p.exp
            if p.applied:
                assert isinstance(p.nxt.ladder_event, asha.TrialCreated | asha.TrialPromoted)
                exp.ladder.revoke(p.nxt.ladder_event)
                if isinstance(p.nxt.ladder_event, asha.TrialCreated):
                    exp.trials.pop(t.idx, None)
            self.s.running.pop(t.id, None)
            self.slots.release(p.run.lease)
            t.state, t.rung, t.target, t.attempts = p.saved
            if p.nxt.requeued:
                exp.queue.insert(0, t)
        planned.clear()

    async def _read_inline_state(self, t: Trial) -> None:
        t.ckpt_data = await self.store.inline_checkpoint(t.id)
        if t.ckpt_data is None:  # only a hand-edited database gets here
            # Starting over from epoch 1 is slower but right; refusing would stall the trial.
            logger.error("trial %s: its inline checkpoint is missing; it starts over", t.id)
            t.ckpt_path, t.ckpt_epoch = None, 0

    def _start_ops(self, p: Planned) -> list[Op]:
        """The decision's ops, the attempt, and the trial's new state."""
        exp, t, run, lease = p.exp, p.run.trial, p.run, p.run.lease
        ident = p.worker.identity if p.worker else None
        assert p.launch is not None
        return [
            *p.nxt.ops,
            AttemptIn(
                run.attempt,
                t.id,
                t.rung,
                lease.label,
                run.started,
                *((ident.pid, ident.pgid, ident.start_ticks, ident.boot_id) if ident else ()),
            ),
            TrialUpdate(t.id, {"state": "running", "attempts": t.attempts, "gpu": lease.label}),
            self._event(
                exp.id,
                "segment_started",
                t.id,
                attempt=run.attempt,
                rung=t.rung,
                resource=t.target,
                from_epoch=p.launch.segment["checkpoint_epoch"],
                slot=lease.label,
                gpus=[g.uuid for g in lease.gpus],
            ),
        ]

    def _launch_spec(
        self, exp: Experiment, t: Trial, attempt: int, lease: gpus.Lease, log: Path, ckpt_dir: str
    ) -> Launch:
        seg = exp.segment(t, attempt, ckpt_dir)
        spec_env = dict(exp.spec.env)
        # A command's process gets a whole environment; a warm worker already has one.
        env = (
            trial_environment(os.environ, {**spec_env, **lease.environment()})
            if exp.spec.command
            else {}
        )
        return Launch(
            segment=seg,
            log_path=log,
            env=env,
            cwd=exp.spec.workdir,
            command=exp.spec.command,
            entrypoint=exp.spec.entrypoint,
            extra={"spec_env": spec_env},
            header=_header(attempt, t, lease),
        )

    async def _worker_for(self, exp: Experiment, lease: gpus.Lease) -> WarmWorker:
        def env() -> dict[str, str]:
            out = trial_environment(os.environ, lease.environment())
            out["HPD_SOCKET"] = str(self.layout.socket)
            return out

        return await self.pool.get(lease.label, env)

    async def _prewarm(self, exp: Experiment) -> None:
        """Start the warm workers an entrypoint experiment will use, before its first segments."""
        res = exp.spec.resources
        if res.gpus_per_trial > 1:
            return  # multi-GPU leases are keyed by their slot combination: start on demand
        cpu = res.gpus_per_trial == 0 or not self.slots.has_gpus
        slots = self.slots.cpu_slots if cpu else self.slots.gpu_slots
        # Leases spread over GPUs before they stack, so warm slot 0 of every GPU first.
        order = sorted(slots, key=lambda sl: (sl.index, sl.gpu.index if sl.gpu else 0))
        for slot in order[: res.max_concurrent]:
            with contextlib.suppress(Exception):  # a failure here is retried at launch
                await self._worker_for(exp, gpus.Lease((slot,)))

    async def _notify_ended(self) -> None:
        async with self.s.ended:
            self.s.ended.notify_all()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_segment(self, run: Running, launch: Launch, worker: WarmWorker | None) -> None:
        try:
            if worker is not None:
                run.proc = worker
                outcome = await worker.run(launch, self.handle)
                if outcome.worker_died:
                    self.pool.discard(run.lease.label)
            else:
                outcome = await self._run_command(run, launch)
        except Exception as exc:
            logger.exception("segment of trial %s failed to run", run.trial.id)
            outcome = Outcome("crashed", f"could not run: {exc}")
        if run.kill_timer:
            run.kill_timer.cancel()
        try:
            async with self._mutex:
                await self._segment_ended(run, outcome)
        except StoreError as exc:
            self._degrade(exc)
            self._requeue_unrecorded(run)
        finally:
            self.s.running.pop(run.trial.id, None)
            self.slots.release(run.lease)
            self.wake()

    def _requeue_unrecorded(self, run: Running) -> None:
        """The end of a segment could not be committed: run it again once the store is back."""
        t, exp = run.trial, run.exp
        if t.state != "running" or run.stop_reason == "cancel" or exp.state == "cancelled":
            return
        t.state = "queued"
        if t not in exp.queue:
            exp.queue.append(t)

    async def _run_command(self, run: Running, launch: Launch) -> Outcome:
        proc = await CommandSegment.start(launch, str(self.layout.socket))
        run.proc = proc
        i = proc.identity
        await self.store.commit(
            "attempt_pid",
            [
                AttemptUpdate(
                    run.attempt,
                    {
                        "pid": i.pid,
                        "pgid": i.pgid,
                        "start_ticks": i.start_ticks,
                        "boot_id": i.boot_id,
                    },
                )
            ],
        )
        if run.stop_reason:  # asked to stop while it was starting
            proc.signal(signal.SIGTERM)
        return await proc.wait()

    async def _commit(self, label: str, ops: Sequence[Op]) -> None:
        """Commit the deferred writes, then ``ops``, in one transaction. Call under the mutex.

        A segment's end is deferred: its result is in the metrics table (it came with the
        checkpoint or the final reports), or rides in this same transaction (a warm worker's
        answer carries the last reports and an inline checkpoint: ``_end_of_segment``), and
        no decision that used it can be durable without it. So a kill before this commit
        only means recovery finds the trial still running at that rung and resumes it from
        its last registered checkpoint: one taken at the rung's epoch leaves nothing to run
        and the reported result is read back (``_reported_result``); an older one runs the
        missing epochs again. Writing the end with the decision that follows it saves one
        fsync per segment, and keeps the event log in the order the ladder saw: every
        decision comes after the results it depended on.
        """
        taken, self._deferred = self._deferred, []
        labels = [lb for lb, _ in taken] + ([label] if label else [])
        try:
            await self.store.commit(
                "+".join(labels), [op for _, o in taken for op in o] + list(ops)
            )
        except BaseException:
            self._deferred = taken + self._deferred
            raise

    async def _flush_deferred(self) -> None:
        if self._deferred:
            async with self._mutex:
                await self._commit("", [])

    # == the end of a segment ===============================================================

    async def _segment_ended(self, run: Running, out: Outcome) -> None:
        exp, t = run.exp, run.trial
        metric = exp.spec.metric
        if out.end:
            try:  # the answer's reports and checkpoint commit with what follows (``_commit``)
                self._deferred.append(("checkpoint", self._end_of_segment(run, out.end)))
            except HpdError as exc:
                out = Outcome("crashed", f"the segment's answer was refused: {exc}")
        if out.status == "ok" and run.result is None and run.stop_reason is None:
            # Resumed from a checkpoint that already covers the rung's epoch (the daemon died
            # after the report was acknowledged, before the result was): nothing left to run.
            run.result = await self._reported_result(t, metric)
        if out.status == "ok" and run.result is not None:
            if run.result != run.result and exp.spec.searcher.on_nan == "retry":
                await self._crashed(run, f"{metric} was nan at epoch {t.target} (on_nan = retry)")
            else:
                self._record_result(run, run.result)
        elif run.stop_reason in ("pause", "cancel", "shutdown"):
            await self._interrupted(run)
        elif run.stop_reason == "timeout":
            timeout = exp.spec.limits.progress_timeout_s
            await self._crashed(run, f"no progress for {timeout:g} s: killed")
        elif out.status == "ok":
            await self._crashed(run, f"exited without reporting {metric!r} at epoch {t.target}")
        else:
            await self._crashed(run, out.message)
        if exp.state == "cancelled" and t.state not in FINAL_TRIAL_STATES:
            # A segment that finished (or failed) as its experiment was cancelled ends here.
            await self._commit("cancelled_trial", [TrialUpdate(t.id, {"state": "cancelled"})])
            t.state = "cancelled"
            with contextlib.suppress(ValueError):
                exp.queue.remove(t)

    async def _reported_result(self, t: Trial, metric: str) -> float | None:
        data = await self.store.metric_at(t.id, t.target)
        if data is None:
            return None
        value = json.loads(data).get(metric)
        return None if value is None else protocol.decode_number(value)

    def _record_result(self, run: Running, value: float) -> None:
        """The rung result: applied now, written with the next commit (see ``_commit``)."""
        exp, t = run.exp, run.trial
        now = self.clock()
        top = exp.ladder.is_top(t.idx, t.rung)
        finite = value == value and abs(value) != float("inf")
        state = "completed" if top else ("paused" if finite else "stopped")
        ops: list[Op] = [
            ResultIn(t.id, t.rung, value, t.target, now),
            TrialUpdate(
                t.id, {"state": state, "error": None if finite else f"{exp.spec.metric} = {value}"}
            ),
            AttemptUpdate(run.attempt, {"ended_at": now, "outcome": "ok"}),
            self._event(
                exp.id,
                "result",
                t.id,
                rung=t.rung,
                value=protocol.encode_number(value),
                epoch=t.target,
                attempt=run.attempt,
            ),
        ]
        if top:
            ops.append(
                self._event(
                    exp.id,
                    "trial_completed",
                    t.id,
                    rung=t.rung,
                    value=protocol.encode_number(value),
                )
            )
        self._deferred.append(("result", ops))
        exp.ladder.apply(asha.ResultRecorded(t.idx, t.rung, value))
        t.state = state
        if state != "paused":
            t.ckpt_data = None  # never resumed again: the database keeps it, memory need not

    async def _interrupted(self, run: Running) -> None:
        exp, t = run.exp, run.trial
        now = self.clock()
        cancelled = run.stop_reason == "cancel"
        state = "cancelled" if cancelled else "queued"
        await self._commit(
            "interrupted",
            [
                AttemptUpdate(run.attempt, {"ended_at": now, "outcome": "interrupted"}),
                TrialUpdate(t.id, {"state": state}),
                self._event(
                    exp.id, "segment_interrupted", t.id, attempt=run.attempt, reason=run.stop_reason
                ),
            ],
        )
        t.state = state
        if not cancelled:
            exp.queue.append(t)

    async def _crashed(self, run: Running, why: str) -> None:
        exp, t = run.exp, run.trial
        now = self.clock()
        restarts = t.restarts + 1
        give_up = restarts > exp.spec.limits.max_restarts
        backoff = 0.0 if give_up else min(30.0, 0.25 * 2 ** (restarts - 1))
        state = "failed" if give_up else "queued"
        ops: list[Op] = [
            AttemptUpdate(run.attempt, {"ended_at": now, "outcome": "crashed"}),
            TrialUpdate(t.id, {"state": state, "restarts": restarts, "error": why}),
            self._event(
                exp.id,
                "segment_failed",
                t.id,
                attempt=run.attempt,
                reason=why,
                restarts=restarts,
                retry_in_s=None if give_up else backoff,
            ),
        ]
        if give_up:
            ops.append(self._event(exp.id, "trial_failed", t.id, reason=why, restarts=restarts))
        await self._commit("crashed", ops)
        t.state, t.restarts = state, restarts
        if give_up:
            exp.ladder.apply(asha.TrialFailed(t.idx))
        else:
            t.not_before = now + backoff
            exp.queue.append(t)

    # == stopping segments ==================================================================

    def _request_stop(self, run: Running, reason: str) -> None:
        if run.stop_reason:
            return
        run.stop_reason = reason
        sig = signal.SIGKILL if reason == "timeout" else signal.SIGTERM
        if run.proc is not None:
            run.proc.signal(sig)
        if sig == signal.SIGTERM:
            loop = asyncio.get_running_loop()
            run.kill_timer = loop.call_later(self.cfg.grace_s, self._kill, run)

    def _kill(self, run: Running) -> None:
        if run.proc is not None and run.trial.id in self.s.running:
            run.proc.signal(signal.SIGKILL)

    async def _watchdog(self) -> None:
        """Kills segments that report nothing for progress_timeout_s; wakes retries."""
        while True:
            await asyncio.sleep(0.5)
            now = self.clock()
            for run in list(self.s.running.values()):
                limit = run.exp.spec.limits.progress_timeout_s
                if now - run.last_progress > limit:
                    self._request_stop(run, "timeout")
            if any(e.queue for e in self.s.experiments.values()) or self.s.degraded:
                self.wake()

    async def _sample_gpus(self) -> None:
        while True:
            if self.probe is not None:
                if isinstance(self.probe, gpus.FakeProbe):
                    self.probe.busy = self.slots.busy_by_gpu()
                try:
                    infos = await asyncio.to_thread(self.probe.list)
                    self.samples = {g.uuid: g for g in infos}
                except Exception:
                    logger.warning("GPU sampling failed", exc_info=True)
            await asyncio.sleep(self.cfg.gpu_sample_s)

    def _event(self, exp_id: int, type_: str, trial_id: int | None, **data: Any) -> NewEvent:
        return NewEvent(exp_id, self.clock(), type_, trial_id, data)

    # == requests ===========================================================================

    async def handle(self, req: protocol.Request) -> Any:
        fn = getattr(self, f"op_{req.op}", None)
        if fn is None:
            raise HpdError(f"unknown op {req.op!r}")
        return await fn(**_args(req))

    async def op_ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": __version__}

    async def op_daemon(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "state_dir": str(self.layout.state),
            "socket": str(self.layout.socket),
            "slots": len(self.slots.gpu_slots) + len(self.slots.cpu_slots),
            "free_slots": len(self.slots.free),
            "running": len(self.s.running),
            "degraded": self.s.degraded,
        }

    async def op_stop(self) -> dict[str, Any]:
        asyncio.get_running_loop().call_soon(self._stopping.set)
        return {"stopping": True}

    # -- from trials ------------------------------------------------------------------------


def _args(req: protocol.Request) -> dict[str, Any]:
    return {k: v for k, v in req.args.items() if isinstance(k, str) and k.isidentifier()}


def _header(attempt: int, t: Trial, lease: gpus.Lease) -> str:
    """The line that opens each segment in the trial's log (written by whoever opens the log)."""
    start = t.ckpt_epoch + 1 if t.ckpt_path else 1
    cuda = lease.environment()["CUDA_VISIBLE_DEVICES"] or "(none)"
    return (
        f"[hpd] attempt {attempt}: rung {t.rung}, epochs {start}..{t.target}, "
        f"slot {lease.label}, CUDA_VISIBLE_DEVICES={cuda}\n"
    )


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
