"""The engine: the one scheduler and the one writer of the daemon's decisions.

Owns the mutex under which the ladders decide and their decisions commit, the writes deferred
to the next commit, the scheduling pass (fill free slots: requeued segments first, then the
ladder's decision), the launch of segments and the requests to stop them, and the clock-driven
tick (progress timeouts, the grace before SIGKILL, retry backoffs).

Every decision is persisted (one transaction) before anyone is told and before its segment
starts, so a kill at any moment loses nothing that was acknowledged. A scheduling pass applies
its decisions to the ladder as it makes them (each must see the ones before it) and commits
them together; if that commit fails they are revoked, last first. What a segment's end means
is ``hpd.daemon.endings``'s. Handed its collaborators (store, state, slots, layout, a launcher,
a clock); must never run SQL itself, call NVML, parse specs or import the daemon's app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpd.core import asha, events
from hpd.core.experiment import Experiment, Trial, model_missing, reason_dict
from hpd.core.lifecycle import WAITING, search_end
from hpd.core.records import (
    INLINE,
    AttemptIn,
    AttemptUpdate,
    ExperimentState,
    NewEvent,
    Op,
    TrialIn,
    TrialsOfExperiment,
    TrialUpdate,
)
from hpd.core.space import Proposal, results_of
from hpd.daemon.endings import Endings
from hpd.daemon.ports import Launcher, Prepared
from hpd.daemon.state import Clock, DaemonState, Next, Running, Slots
from hpd.daemon.workers import Identity, Launch, Outcome, trial_environment
from hpd.errors import StoreError
from hpd.io import gpus
from hpd.io.paths import Layout
from hpd.io.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Planned:
    """A launch decided and applied in memory, waiting for the commit that records it."""

    exp: Experiment
    nxt: Next
    run: Running
    saved: tuple[str, int, int, int]  # the trial's state, rung, target, attempts before
    launch: Launch | None = None
    prepared: Prepared = field(default_factory=Prepared)
    applied: bool = False  # its ladder event is applied (revoke it on undo)

    @property
    def label(self) -> str:
        return f"{self.nxt.label}+start_attempt" if self.nxt.label else "start_attempt"


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        state: DaemonState,
        slots: Slots,
        layout: Layout,
        launcher: Launcher,
        clock: Clock,
        grace_s: float,
    ) -> None:
        self.store, self.state, self.slots, self.layout = store, state, slots, layout
        self.launcher, self.clock, self.grace_s = launcher, clock, grace_s
        self._mutex = asyncio.Lock()  # ladder decisions + their commits happen one at a time
        self._wake = asyncio.Event()
        self.stopping = False  # no new segment starts once the daemon is stopping
        self._background: set[asyncio.Task[None]] = set()
        self._deferred: list[tuple[str, list[Op]]] = []  # writes riding with the next commit
        self.ends = Endings(
            store=store,
            layout=layout,
            clock=clock,
            commit=self.commit,
            defer=self.defer,
            event=self.event,
        )

    # == commits ============================================================================

    @property
    def mutex(self) -> asyncio.Lock:
        return self._mutex

    def event(self, exp_id: int, trial_id: int | None, ev: events.Event) -> NewEvent:
        return NewEvent(exp_id, self.clock(), trial_id, ev)

    def defer(self, label: str, ops: list[Op]) -> None:
        """Writes that ride with the next commit (see ``commit``)."""
        self._deferred.append((label, ops))

    async def commit(self, label: str, ops: Sequence[Op]) -> None:
        """Commit the deferred writes, then ``ops``, in one transaction. Call under the mutex.

        A segment's end is deferred: its result is in the metrics table (it came with the
        checkpoint or the final reports), or rides in this same transaction (a warm worker's
        answer carries the last reports and an inline checkpoint), and no decision that used
        it can be durable without it. So a kill before this commit only means recovery finds
        the trial still running at that rung and resumes it from its last registered
        checkpoint: one taken at the rung's epoch leaves nothing to run and the reported
        result is read back; an older one runs the missing epochs again. Writing the end with
        the decision that follows it saves one fsync per segment, and keeps the event log in
        the order the ladder saw: every decision comes after the results it depended on.
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

    async def flush_deferred(self) -> None:
        if self._deferred:
            async with self._mutex:
                await self.commit("", [])

    # == scheduling =========================================================================

    def wake(self) -> None:
        self._wake.set()

    async def run_scheduler(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.fill_slots()
            except StoreError as exc:
                self.degrade(exc)
            except Exception:  # a bug must not silently stop all scheduling
                logger.exception("scheduler pass failed")
            # Woken by any slot freeing, any submit/resume, and the tick (backoffs).
            # (Not asyncio.wait_for: on 3.11 it can swallow the cancellation at shutdown.)
            await self._wake.wait()

    def degrade(self, exc: Exception) -> None:
        if self.state.degraded is None:
            logger.error("store failed, degraded: %s", exc)
        self.state.degraded = str(exc)

    async def fill_slots(self) -> None:
        """Fill every free slot the ladders have work for, recorded in one commit.

        Each launch is decided and applied in memory first, so the next decision sees it;
        one transaction then records them all (with any deferred segment ends), and only then
        do the segments start. Slots that free together thus share one commit instead of
        queueing one commit each behind the mutex. If the commit fails, every launch of the
        pass is undone in reverse order (``_unplan``) and nothing started.
        """
        if self.stopping:
            return
        if self.state.degraded and not await self._store_healthy():
            return
        async with self._mutex:
            planned: list[Planned] = []
            try:
                progress = True
                while progress:  # round robin: one segment per experiment per round
                    progress = False
                    for exp in list(self.state.experiments.values()):
                        if exp.state == "running" and await self._plan_one(exp, planned):
                            progress = True
                await self._start_planned(planned)
            except BaseException:
                self._unplan(planned)
                raise
        await self.flush_deferred()  # segments ended and nothing started after them

    async def _store_healthy(self) -> bool:
        try:
            async with self._mutex:
                await self.commit("health", [])
        except StoreError:
            return False
        self.state.degraded = None
        return True

    async def _plan_one(self, exp: Experiment, planned: list[Planned]) -> bool:
        res = exp.spec.resources
        if self.state.running_of(exp) >= res.max_concurrent:
            return False
        lease = self.slots.table.acquire(
            res.gpus_per_trial,
            min_free_memory_mb=res.min_free_memory_mb,
            samples=self.slots.samples,
        )
        if lease is None:
            return False
        nxt = await self._next_segment(exp)
        if nxt is None:
            self.slots.table.release(lease)
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
        tid = self.state.ids.take("trials")
        t = Trial(tid, exp.id, d.trial, d.bracket, dict(params), "queued", d.rung, d.resource)
        created = events.TrialCreated(t.idx, t.bracket, params, t.target, proposal.info)
        ops: list[Op] = [
            TrialIn(
                tid, exp.id, t.idx, t.bracket, json.dumps(params), "queued", t.rung, t.target, now
            ),
            self.event(exp.id, tid, created),
        ]
        return Next(t, d.rung, d.resource, ops, asha.event_for(d), label="create_trial")

    def _promote(self, exp: Experiment, d: asha.Promote) -> Next:
        t = exp.trials[d.trial]
        promoted = events.Promoted(d.from_rung, d.to_rung, d.resource, reason_dict(d.reason))
        ops: list[Op] = [
            TrialUpdate(t.id, {"state": "queued", "rung": d.to_rung, "target": d.resource}),
            self.event(exp.id, t.id, promoted),
        ]
        return Next(t, d.to_rung, d.resource, ops, asha.event_for(d), label="promote")

    async def _maybe_finish(self, exp: Experiment) -> None:
        if exp.state != "running" or exp.queue or self.state.running_of(exp):
            return
        if not isinstance(exp.ladder.decide(), asha.Done):
            return
        anything = any(exp.ladder.results(t.idx) for t in exp.trials.values())
        state = search_end(any_result=anything)
        await self.commit(
            "finish",
            [
                TrialsOfExperiment(exp.id, WAITING, "stopped"),
                ExperimentState(exp.id, state, self.clock()),
                self.event(exp.id, None, events.state_event(state)),
            ],
        )
        exp.state = state
        del self.state.experiments[exp.id]
        await self.notify_ended()

    # == launching ==========================================================================

    async def _plan_launch(self, exp: Experiment, nxt: Next, lease: gpus.Lease) -> Planned:
        """Prepare a segment and apply its decision in memory; ``_start_planned`` records it."""
        t = nxt.trial
        saved = (t.state, t.rung, t.target, t.attempts)
        now = self.clock()
        attempt = self.state.ids.take("attempts")
        t.rung, t.target = nxt.rung, nxt.target
        run = Running(exp, t, attempt, lease, now, now)
        self.state.running[t.id] = run
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
            p.prepared = await self.launcher.prepare(exp, lease)
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
        await self.commit(
            "+".join(p.label for p in planned), [op for p in planned for op in self._start_ops(p)]
        )
        started, planned[:] = list(planned), []  # recorded: nothing left to undo
        for p in started:
            assert p.launch is not None
            p.run.task = asyncio.create_task(
                self._run_segment(p.run, p.launch, p.prepared), name=f"trial:{p.run.trial.id}"
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
            self.state.running.pop(t.id, None)
            self.slots.table.release(p.run.lease)
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
        ident = p.prepared.identity
        assert p.launch is not None
        started = events.SegmentStarted(
            run.attempt,
            t.rung,
            t.target,
            p.launch.segment["checkpoint_epoch"],
            lease.label,
            [g.uuid for g in lease.gpus],
        )
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
            self.event(exp.id, t.id, started),
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

    def prewarm(self, exp: Experiment) -> None:
        """Start the warm workers an entrypoint experiment will use, before its first segments."""
        res = exp.spec.resources
        if not exp.spec.entrypoint or res.gpus_per_trial > 1:
            return  # multi-GPU leases are keyed by their slot combination: start on demand
        table = self.slots.table
        cpu = res.gpus_per_trial == 0 or not table.has_gpus
        slots = table.cpu_slots if cpu else table.gpu_slots
        # Leases spread over GPUs before they stack, so warm slot 0 of every GPU first.
        order = sorted(slots, key=lambda sl: (sl.index, sl.gpu.index if sl.gpu else 0))
        leases = [gpus.Lease((slot,)) for slot in order[: res.max_concurrent]]
        self.spawn(self.launcher.prewarm(exp, leases))

    async def notify_ended(self) -> None:
        async with self.state.ended:
            self.state.ended.notify_all()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_segment(self, run: Running, launch: Launch, prepared: Prepared) -> None:
        try:
            outcome = await self.launcher.run(
                run, launch, prepared, lambda ident: self._started(run, ident)
            )
            if outcome.worker_died:
                self.launcher.discard(run.lease)
        except Exception as exc:
            logger.exception("segment of trial %s failed to run", run.trial.id)
            outcome = Outcome("crashed", f"could not run: {exc}")
        run.kill_at = None
        try:
            async with self._mutex:
                await self.ends.segment_ended(run, outcome)
        except StoreError as exc:
            self.degrade(exc)
            self.ends.requeue_unrecorded(run)
        finally:
            self.state.running.pop(run.trial.id, None)
            self.slots.table.release(run.lease)
            self.wake()

    async def _started(self, run: Running, i: Identity) -> None:
        """A command's process exists: record who it is (recovery kills it if we die)."""
        ids = {"pid": i.pid, "pgid": i.pgid, "start_ticks": i.start_ticks, "boot_id": i.boot_id}
        await self.store.commit("attempt_pid", [AttemptUpdate(run.attempt, ids)])
        if run.stop_reason and run.proc is not None:  # asked to stop while it was starting
            run.proc.signal(signal.SIGTERM)

    # == stopping segments ==================================================================

    def request_stop(self, run: Running, reason: str) -> None:
        if run.stop_reason:
            return
        run.stop_reason = reason
        sig = signal.SIGKILL if reason == "timeout" else signal.SIGTERM
        if run.proc is not None:
            run.proc.signal(sig)
        if sig == signal.SIGTERM:
            run.kill_at = self.clock() + self.grace_s

    def tick(self) -> None:
        """What the clock decides: kill segments past their grace or their progress timeout,
        and wake the scheduler for retries whose backoff may have passed."""
        now = self.clock()
        for run in list(self.state.running.values()):
            if run.kill_at is not None and now >= run.kill_at and run.proc is not None:
                run.kill_at = None
                run.proc.signal(signal.SIGKILL)
            limit = run.exp.spec.limits.progress_timeout_s
            if now - run.last_progress > limit:
                self.request_stop(run, "timeout")
        if any(e.queue for e in self.state.experiments.values()) or self.state.degraded:
            self.wake()

    async def pause_if_unrunnable(self, exp: Experiment) -> None:
        """A search whose sampler needs a package this daemon lacks waits, paused, for it."""
        missing = model_missing(exp.spec)
        if missing is None or exp.state != "running":
            return
        logger.error("experiment %d paused: %s", exp.id, missing)
        async with self._mutex:
            await self.commit(
                "pause_unrunnable",
                [
                    ExperimentState(exp.id, "paused", None),
                    self.event(exp.id, None, events.ExperimentPaused(reason=missing)),
                ],
            )
        exp.state = "paused"


def _header(attempt: int, t: Trial, lease: gpus.Lease) -> str:
    """The line that opens each segment in the trial's log (written by whoever opens the log)."""
    start = t.ckpt_epoch + 1 if t.ckpt_path else 1
    cuda = lease.environment()["CUDA_VISIBLE_DEVICES"] or "(none)"
    return (
        f"[hpd] attempt {attempt}: rung {t.rung}, epochs {start}..{t.target}, "
        f"slot {lease.label}, CUDA_VISIBLE_DEVICES={cuda}\n"
    )
