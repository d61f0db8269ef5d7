"""The requests that change an experiment: submit, retrain, pause, resume, cancel.

Owns the checks a request must pass before it changes anything (a valid spec, an experiment in
a state that allows the verb, a finished search to retrain from) and the one commit each
request makes. A refused request writes nothing. Handed the store, the daemon's state, the
engine (``EngineApi``) and the clock; never imports the daemon. Must never schedule (the
ladder and the engine do), or touch trial processes other than by asking the engine to stop
running segments.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpd.core import events, retrain
from hpd.core.experiment import Experiment, model_missing
from hpd.core.lifecycle import SEARCHING, VERBS, WAITING, experiment_move
from hpd.core.records import ExperimentIn, ExperimentRow, ExperimentState, Op, TrialsOfExperiment
from hpd.core.spec import Spec, parse_spec
from hpd.daemon.ports import EngineApi
from hpd.daemon.router import Handler, as_int
from hpd.daemon.state import Clock, DaemonState
from hpd.errors import HpdError, SpecError
from hpd.io.store import Store


async def experiment_row(store: Store, exp: Any) -> ExperimentRow:
    """The stored experiment a request names, or an error saying there is none."""
    exp_id = as_int(exp, "experiment")
    row = await store.experiment(exp_id)
    if row is None:
        raise HpdError(f"no experiment {exp_id}")
    return row


class ControlHandlers:
    def __init__(self, store: Store, state: DaemonState, engine: EngineApi, clock: Clock) -> None:
        self.store, self.state, self.engine, self.clock = store, state, engine, clock

    def routes(self) -> dict[str, Handler]:
        return {
            "submit": self.submit,
            "retrain": self.retrain,
            "pause": self.pause,
            "resume": self.resume,
            "cancel": self.cancel,
        }

    async def submit(self, spec: Any, base_dir: str | None = None) -> dict[str, Any]:
        parsed = parse_spec(spec, base_dir=base_dir)
        exp = await self._admit(parsed, parent=None, extra=())
        return {"id": exp.id}

    async def retrain(
        self, exp: Any, top: Any, epochs: Any, metric: Any = None, mode: Any = None
    ) -> dict[str, Any]:
        """Train the top ``top`` configurations of a finished search for ``epochs`` epochs on
        the full data, as a new experiment whose parent is the search."""
        k, n = retrain.validate_request(top, epochs)
        row = await experiment_row(self.store, exp)
        if row.state in SEARCHING:
            raise HpdError(
                f"experiment {row.id} is {row.state}; retrain it once it has finished"
                " (or cancel it first)"
            )
        parent_spec = json.loads(row.spec)
        ranking = retrain.rank(
            parent_spec["mode"], await self.store.trials(row.id), await self.store.results(row.id)
        )
        picks = ranking[:k]
        spec = retrain.retrain_spec(parent_spec, picks, epochs=n, metric=metric, mode=mode)
        plan = events.RetrainPlanned(row.id, [p.as_dict() for p in picks])
        child = await self._admit(spec, parent=row.id, extra=(plan,))
        return {"id": child.id, "parent": row.id, "trials": [p.trial for p in picks]}

    async def _admit(
        self, parsed: Spec, *, parent: int | None, extra: Sequence[events.Event]
    ) -> Experiment:
        """Admit a validated spec: one commit of the experiment and its first events."""
        if self.state.degraded:
            raise HpdError(f"daemon is degraded ({self.state.degraded}); not accepting searches")
        if not Path(parsed.workdir).is_absolute():
            raise SpecError(
                [f"workdir: must be an absolute path when submitted, got {parsed.workdir!r}"]
            )
        if parsed.entrypoint is None and parsed.command is None:
            raise SpecError(["entrypoint: exactly one of entrypoint or command is required"])
        missing = model_missing(parsed)
        if missing:
            raise SpecError([f"searcher.sampler: {missing}"])
        now = self.clock()
        async with self.engine.mutex:
            exp = Experiment.new(self.state.ids.experiments, parsed, "running", now)
            submitted = events.ExperimentSubmitted(exp.name, exp.ladder.config.max_trials)
            ops: list[Op] = [
                ExperimentIn(exp.id, exp.name, exp.spec_json, "running", now, parent),
                *(self.engine.event(exp.id, None, ev) for ev in (submitted, *extra)),
            ]
            await self.engine.commit("submit", ops)
            self.state.ids.take("experiments")
            self.state.experiments[exp.id] = exp
        self.engine.prewarm(exp)
        self.engine.wake()
        return exp

    async def _set_state(self, exp: Any, allowed: tuple[str, ...], new: str) -> Experiment:
        exp_id = as_int(exp, "experiment")
        live = self.state.experiments.get(exp_id)
        if live is None or live.state not in allowed:
            row = await experiment_row(self.store, exp_id)
            raise HpdError(f"experiment {exp_id} is {row.state}; cannot {VERBS.get(new, new)} it")
        async with self.engine.mutex:
            state = experiment_move(live.state, new)
            ops: list[Op] = [
                ExperimentState(exp_id, state, self.clock() if state == "cancelled" else None),
                self.engine.event(exp_id, None, events.state_event(state)),
            ]
            if state == "cancelled":
                ops.insert(0, TrialsOfExperiment(exp_id, WAITING, "cancelled"))
            await self.engine.commit(f"experiment_{state}", ops)
            live.state = state
        return live

    async def pause(self, exp: Any) -> dict[str, Any]:
        live = await self._set_state(exp, ("running",), "paused")
        self._stop_segments(live, "pause")
        return {"id": live.id, "state": live.state}

    async def resume(self, exp: Any) -> dict[str, Any]:
        paused = self.state.experiments.get(as_int(exp, "experiment"))
        missing = model_missing(paused.spec) if paused is not None else None
        if paused is not None and missing:
            raise HpdError(f"experiment {paused.id} cannot resume: {missing}")
        live = await self._set_state(exp, ("paused",), "running")
        self.engine.wake()
        return {"id": live.id, "state": live.state}

    async def cancel(self, exp: Any) -> dict[str, Any]:
        live = await self._set_state(exp, SEARCHING, "cancelled")
        live.queue.clear()
        self._stop_segments(live, "cancel")
        self.state.experiments.pop(live.id, None)
        await self.engine.notify_ended()
        return {"id": live.id, "state": live.state}

    def _stop_segments(self, live: Experiment, reason: str) -> None:
        for run in list(self.state.running.values()):
            if run.exp is live:
                self.engine.request_stop(run, reason)
