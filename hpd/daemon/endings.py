"""What the end of a segment means: a rung result, an interruption, a crash to retry or give up.

Owns the reading of a segment's ``Outcome`` (with what its trial reported) into the trial's
next state, by the lifecycle's rules, and the writes that record it: a result rides with the
next commit (``Engine.defer``), everything else commits at once. Called by the engine under its
mutex, with its commits handed in; must never start segments or decide what runs next.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence

from hpd.core import asha, events, numbers
from hpd.core.experiment import Trial
from hpd.core.lifecycle import (
    FINAL_TRIAL_STATES,
    after_crash,
    after_interruption,
    after_result,
    trial_move,
)
from hpd.core.records import AttemptUpdate, NewEvent, Op, ResultIn, TrialUpdate
from hpd.daemon import reports
from hpd.daemon.state import Clock, Running
from hpd.daemon.workers import Outcome
from hpd.errors import HpdError
from hpd.io.paths import Layout
from hpd.io.store import Store

MAX_BACKOFF_S = 30.0


class Endings:
    """Handed the engine's ``commit`` (under its mutex), ``defer`` and ``event``."""

    def __init__(
        self,
        *,
        store: Store,
        layout: Layout,
        clock: Clock,
        commit: Callable[[str, Sequence[Op]], Awaitable[None]],
        defer: Callable[[str, list[Op]], None],
        event: Callable[[int, int | None, events.Event], NewEvent],
    ) -> None:
        self.store, self.layout, self.clock = store, layout, clock
        self.commit, self.defer, self.event = commit, defer, event

    async def segment_ended(self, run: Running, out: Outcome) -> None:
        eng, exp, t = self, run.exp, run.trial
        metric = exp.spec.metric
        if out.end:
            try:  # the answer's reports and checkpoint commit with what follows
                eng.defer(
                    "checkpoint", reports.end_of_segment(run, eng.layout, out.end, eng.clock())
                )
            except HpdError as exc:
                out = Outcome("crashed", f"the segment's answer was refused: {exc}")
        if out.status == "ok" and run.result is None and run.stop_reason is None:
            # Resumed from a checkpoint that already covers the rung's epoch (the daemon died
            # after the report was acknowledged, before the result was): nothing left to run.
            run.result = await self._reported_result(t, metric)
        if out.status == "ok" and run.result is not None:
            if run.result != run.result and exp.spec.searcher.on_nan == "retry":
                await self.crashed(run, f"{metric} was nan at epoch {t.target} (on_nan = retry)")
            else:
                self.record_result(run, run.result)
        elif run.stop_reason in ("pause", "cancel", "shutdown"):
            await self.interrupted(run)
        elif out.status == "lost":  # its node left the cluster: rerun it, no restart counted
            run.stop_reason = "lost"
            await self.interrupted(run, out.message)
        elif run.stop_reason == "timeout":
            timeout = exp.spec.limits.progress_timeout_s
            await self.crashed(run, f"no progress for {timeout:g} s: killed")
        elif out.status == "ok":
            await self.crashed(run, f"exited without reporting {metric!r} at epoch {t.target}")
        else:
            await self.crashed(run, out.message)
        if exp.state == "cancelled" and t.state not in FINAL_TRIAL_STATES:
            # A segment that finished (or failed) as its experiment was cancelled ends here.
            state = trial_move(t.state, "cancelled")
            await eng.commit("cancelled_trial", [TrialUpdate(t.id, {"state": state})])
            t.state = state
            with contextlib.suppress(ValueError):
                exp.queue.remove(t)

    async def _reported_result(self, t: Trial, metric: str) -> float | None:
        data = await self.store.metric_at(t.id, t.target)
        if data is None:
            return None
        value = json.loads(data).get(metric)
        return None if value is None else numbers.decode(value)

    def record_result(self, run: Running, value: float) -> None:
        """The rung result: applied now, written with the next commit (``Engine.commit``)."""
        eng, exp, t = self, run.exp, run.trial
        now = eng.clock()
        top = exp.ladder.is_top(t.idx, t.rung)
        finite = numbers.is_finite(value)
        state = trial_move(t.state, after_result(top=top, finite=finite))
        ops: list[Op] = [
            ResultIn(t.id, t.rung, value, t.target, now),
            TrialUpdate(
                t.id, {"state": state, "error": None if finite else f"{exp.spec.metric} = {value}"}
            ),
            AttemptUpdate(run.attempt, {"ended_at": now, "outcome": "ok"}),
            eng.event(exp.id, t.id, events.Result(t.rung, value, t.target, run.attempt)),
        ]
        if top:
            ops.append(eng.event(exp.id, t.id, events.TrialCompleted(t.rung, value)))
        eng.defer("result", ops)
        exp.ladder.apply(asha.ResultRecorded(t.idx, t.rung, value))
        t.state = state
        if state != "paused":
            t.ckpt_data = None  # never resumed again: the database keeps it, memory need not

    async def interrupted(self, run: Running, why: str | None = None) -> None:
        eng, exp, t = self, run.exp, run.trial
        now = eng.clock()
        cancelled = run.stop_reason == "cancel"
        state = trial_move(t.state, after_interruption(cancelled=cancelled))
        await eng.commit(
            "interrupted",
            [
                AttemptUpdate(run.attempt, {"ended_at": now, "outcome": "interrupted"}),
                TrialUpdate(t.id, {"state": state}),
                eng.event(
                    exp.id, t.id, events.SegmentInterrupted(run.attempt, run.stop_reason, why)
                ),
            ],
        )
        t.state = state
        if not cancelled:
            exp.queue.append(t)

    async def crashed(self, run: Running, why: str) -> None:
        eng, exp, t = self, run.exp, run.trial
        now = eng.clock()
        restarts = t.restarts + 1
        give_up = restarts > exp.spec.limits.max_restarts
        backoff = 0.0 if give_up else min(MAX_BACKOFF_S, 0.25 * 2 ** (restarts - 1))
        state = trial_move(t.state, after_crash(give_up=give_up))
        failed = events.SegmentFailed(run.attempt, why, restarts, None if give_up else backoff)
        ops: list[Op] = [
            AttemptUpdate(run.attempt, {"ended_at": now, "outcome": "crashed"}),
            TrialUpdate(t.id, {"state": state, "restarts": restarts, "error": why}),
            eng.event(exp.id, t.id, failed),
        ]
        if give_up:
            ops.append(eng.event(exp.id, t.id, events.TrialFailed(why, restarts)))
        await eng.commit("crashed", ops)
        t.state, t.restarts = state, restarts
        if give_up:
            exp.ladder.apply(asha.TrialFailed(t.idx))
        else:
            t.not_before = now + backoff
            exp.queue.append(t)

    def requeue_unrecorded(self, run: Running) -> None:
        """The end of a segment could not be committed: run it again once the store is back."""
        t, exp = run.trial, run.exp
        if t.state != "running" or run.stop_reason == "cancel" or exp.state == "cancelled":
            return
        t.state = trial_move(t.state, "queued")
        if t not in exp.queue:
            exp.queue.append(t)
