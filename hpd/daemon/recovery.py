"""Starting is recovering: what the daemon does with the state a previous one left behind.

Owns the crash-only start: every attempt left open is closed as lost (its process group killed
first, when we can prove it is the one we started: same pid, start time and boot), every search
that had not ended is rebuilt from its event log and rows, its segments in flight are requeued,
and a search whose sampler this daemon cannot run is paused with the reason. Must never start a
segment (the engine does, once recovery is done).
"""

from __future__ import annotations

import json

from hpd.core import events
from hpd.core.experiment import Experiment
from hpd.core.lifecycle import FINAL_EXPERIMENT_STATES, trial_move
from hpd.core.records import AttemptUpdate, Op, TrialUpdate
from hpd.core.spec import parse_spec
from hpd.daemon.engine import Engine
from hpd.io import procs


async def recover(engine: Engine) -> None:
    store, now = engine.store, engine.clock()
    ops: list[Op] = []
    for a in await store.open_attempts():
        if a.pgid and procs.is_same_process(a.pgid, a.start_ticks, a.boot_id):
            procs.kill_group(a.pgid)
        ops.append(AttemptUpdate(a.id, {"ended_at": now, "outcome": "lost"}))
    if ops:
        await store.commit("recover_attempts", ops)
    for row in await store.experiments():
        if row.state in FINAL_EXPERIMENT_STATES:
            continue
        exp = Experiment.new(row.id, parse_spec(json.loads(row.spec)), row.state, row.created_at)
        exp.replay(await store.events(row.id, types=events.LADDER), await store.trials(row.id))
        await _requeue_outstanding(engine, exp)
        await engine.pause_if_unrunnable(exp)
        engine.state.experiments[exp.id] = exp


async def _requeue_outstanding(engine: Engine, exp: Experiment) -> None:
    """Segments the ladder had running are queued to run again (from their last checkpoint)."""
    ops: list[Op] = []
    for t in exp.trials.values():
        if exp.ladder.state_of(t.idx) != "running":
            continue
        if t.state != "queued":
            t.state = trial_move(t.state, "queued")
            ops.append(TrialUpdate(t.id, {"state": "queued"}))
            requeued = events.SegmentRequeued("daemon restarted")
            ops.append(engine.event(exp.id, t.id, requeued))
        exp.queue.append(t)
    if ops:
        await engine.store.commit("requeue", ops)
