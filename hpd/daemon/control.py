"""The daemon's requests that change an experiment: submit, retrain, pause, resume, cancel.

Owns the checks a request must pass before it changes anything (a valid spec, an experiment
in a state that allows the verb, a finished search to retrain from) and the one commit each
request makes. A refused request writes nothing. A mixin of ``Daemon``: it sees the daemon's
store, clock, id counters, live experiments and running segments.

Must never: schedule (the ladder and ``Daemon._fill_slots`` do), or touch trial processes
other than by asking running segments to stop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpd.core import retrain
from hpd.core.experiment import Experiment, model_missing
from hpd.core.spec import Spec, parse_spec
from hpd.daemon.queries import as_int
from hpd.errors import HpdError, SpecError
from hpd.io.store import (
    ExperimentIn,
    ExperimentRow,
    ExperimentState,
    NewEvent,
    Op,
    Store,
    TrialsOfExperiment,
)

if TYPE_CHECKING:
    from hpd.daemon.app import DaemonState, Ids, Running

_VERBS = {"paused": "pause", "running": "resume", "cancelled": "cancel"}
_SEARCHING = ("running", "paused")


class ControlOps:
    store: Store
    clock: Callable[[], float]
    s: DaemonState
    ids: Ids
    _mutex: asyncio.Lock

    if TYPE_CHECKING:  # provided by Daemon and QueryOps; declared only for the type checker

        def _event(
            self, exp_id: int, type_: str, trial_id: int | None, **data: Any
        ) -> NewEvent: ...
        def _spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
        async def _prewarm(self, exp: Experiment) -> None: ...
        def wake(self) -> None: ...
        def _request_stop(self, run: Running, reason: str) -> None: ...
        async def _notify_ended(self) -> None: ...
        async def _exp_row(self, exp: Any) -> ExperimentRow: ...
        async def _commit(self, label: str, ops: Sequence[Op]) -> None: ...

    async def op_submit(self, spec: Any, base_dir: str | None = None) -> dict[str, Any]:
        parsed = parse_spec(spec, base_dir=base_dir)
        exp = await self._submit(parsed, parent=None, extra=())
        return {"id": exp.id}

    async def op_retrain(
        self, exp: Any, top: Any, epochs: Any, metric: Any = None, mode: Any = None
    ) -> dict[str, Any]:
        """Train the top ``top`` configurations of a finished search for ``epochs`` epochs on
        the full data, as a new experiment whose parent is the search."""
        k, n = retrain.validate_request(top, epochs)
        row = await self._exp_row(exp)
        if row.state in _SEARCHING:
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
        plan = {
            "parent": row.id,
            "picks": [
                {"trial": p.trial, "rung": p.rung, "value": p.value, "params": p.params}
                for p in picks
            ],
        }
        child = await self._submit(spec, parent=row.id, extra=(("retrain_planned", plan),))
        return {"id": child.id, "parent": row.id, "trials": [p.trial for p in picks]}

    async def _submit(
        self,
        parsed: Spec,
        *,
        parent: int | None,
        extra: Sequence[tuple[str, dict[str, Any]]],
    ) -> Experiment:
        """Admit a validated spec: one commit of the experiment and its first events
        (``extra``: more (type, data) events of the new experiment)."""
        if self.s.degraded:
            raise HpdError(f"daemon is degraded ({self.s.degraded}); not accepting searches")
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
        async with self._mutex:
            exp = Experiment.new(self.ids.experiments, parsed, "running", now)
            submitted = self._event(
                exp.id,
                "experiment_submitted",
                None,
                name=exp.name,
                max_trials=exp.ladder.config.max_trials,
            )
            ops: list[Op] = [
                ExperimentIn(exp.id, exp.name, exp.spec_json, "running", now, parent),
                submitted,
                *(self._event(exp.id, type_, None, **data) for type_, data in extra),
            ]
            await self._commit("submit", ops)
            self.ids.take("experiments")
            self.s.experiments[exp.id] = exp
        if parsed.entrypoint:
            self._spawn(self._prewarm(exp))
        self.wake()
        return exp

    async def _set_state(self, exp: Any, allowed: tuple[str, ...], new: str) -> Experiment:
        exp_id = as_int(exp, "experiment")
        live = self.s.experiments.get(exp_id)
        if live is None or live.state not in allowed:
            row = await self._exp_row(exp_id)
            raise HpdError(f"experiment {exp_id} is {row.state}; cannot {_VERBS.get(new, new)} it")
        async with self._mutex:
            ops: list[Op] = [
                ExperimentState(exp_id, new, self.clock() if new == "cancelled" else None),
                self._event(exp_id, f"experiment_{new}", None),
            ]
            if new == "cancelled":
                ops.insert(0, TrialsOfExperiment(exp_id, ("queued", "paused"), "cancelled"))
            await self._commit(f"experiment_{new}", ops)
            live.state = new
        return live

    async def op_pause(self, exp: Any) -> dict[str, Any]:
        live = await self._set_state(exp, ("running",), "paused")
        for run in list(self.s.running.values()):
            if run.exp is live:
                self._request_stop(run, "pause")
        return {"id": live.id, "state": live.state}

    async def op_resume(self, exp: Any) -> dict[str, Any]:
        paused = self.s.experiments.get(as_int(exp, "experiment"))
        missing = model_missing(paused.spec) if paused is not None else None
        if paused is not None and missing:
            raise HpdError(f"experiment {paused.id} cannot resume: {missing}")
        live = await self._set_state(exp, ("paused",), "running")
        self.wake()
        return {"id": live.id, "state": live.state}

    async def op_cancel(self, exp: Any) -> dict[str, Any]:
        live = await self._set_state(exp, _SEARCHING, "cancelled")
        live.queue.clear()
        for run in list(self.s.running.values()):
            if run.exp is live:
                self._request_stop(run, "cancel")
        self.s.experiments.pop(live.id, None)
        await self._notify_ended()
        return {"id": live.id, "state": live.state}
