"""The read-only requests: experiments, trials, events, the ladder, GPUs, logs, export.

Owns the answers to questions about state (their ``--json`` shapes are ``hpd.core.views``').
Handed the store, the daemon's state, its slots, the layout and the clock; never imports the
daemon. Must never change state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from hpd.core import events, numbers, retrain, views
from hpd.core.experiment import Experiment
from hpd.core.lifecycle import FINAL_TRIAL_STATES
from hpd.core.spec import parse_spec
from hpd.daemon.handlers.control import experiment_row
from hpd.daemon.router import Handler, as_int
from hpd.daemon.state import Clock, DaemonState, Slots
from hpd.errors import HpdError
from hpd.io.paths import Layout
from hpd.io.store import Store


class QueryHandlers:
    def __init__(
        self, store: Store, state: DaemonState, slots: Slots, layout: Layout, clock: Clock
    ) -> None:
        self.store, self.state, self.slots = store, state, slots
        self.layout, self.clock = layout, clock

    def routes(self) -> dict[str, Handler]:
        return {
            "wait": self.wait,
            "ls": self.ls,
            "status": self.status,
            "trials": self.trials,
            "retrained": self.retrained,
            "best": self.best,
            "events": self.events,
            "metrics": self.metrics,
            "ladder": self.ladder,
            "gpus": self.gpus,
            "logs": self.logs,
            "export": self.export,
        }

    async def wait(self, exp: Any, timeout: Any = 30.0) -> dict[str, Any]:
        """Long poll: the experiment's status once it has ended, or after ``timeout`` seconds."""
        exp_id = as_int(exp, "experiment")
        limit = min(max(float(timeout), 0.0), 300.0) if isinstance(timeout, (int, float)) else 30.0
        # The predicate is checked under the condition's lock, and an experiment leaves the
        # live set before the notification: an end between check and wait cannot be missed.
        async with self.state.ended:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit):
                    await self.state.ended.wait_for(lambda: exp_id not in self.state.experiments)
        return await self.status(exp_id)

    async def ls(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        for row in await self.store.experiments():
            trials = await self.store.trials(row.id)
            out.append(views.status(row, trials, await self.store.results(row.id), now))
        return out

    async def status(self, exp: Any) -> dict[str, Any]:
        row = await experiment_row(self.store, exp)
        trials = await self.store.trials(row.id)
        return views.status(row, trials, await self.store.results(row.id), self.clock())

    async def trials(self, exp: Any) -> list[dict[str, Any]]:
        row = await experiment_row(self.store, exp)
        results = await self.store.results(row.id)
        run_s = await self.store.run_seconds(row.id, self.clock())
        return [
            views.trial(t, results.get(t.id, {}), run_s.get(t.id, 0.0))
            for t in await self.store.trials(row.id)
        ]

    async def retrained(self, exp: Any) -> dict[str, Any]:
        """A retraining experiment's configurations beside the search results that chose them."""
        row = await experiment_row(self.store, exp)
        plans = await self.store.events(row.id, types=("retrain_planned",), limit=1)
        if not plans:
            raise HpdError(f"experiment {row.id} is not a retraining (see hpd retrain)")
        trials = await self.store.trials(row.id)
        curves = await self.store.metrics(t.id for t in trials)
        # the metrics of the last epoch each trial reported
        finals = {tid: {**json.loads(c[-1][1]), "epoch": c[-1][0]} for tid, c in curves.items()}
        table = retrain.rows(
            trials,
            json.loads(plans[0].data)["picks"],
            await self.store.results(row.id),
            finals,
            await self.store.run_seconds(row.id, self.clock()),
        )
        spec = json.loads(row.spec)
        return {
            "id": row.id,
            "parent": row.parent_id,
            "state": row.state,
            "metric": spec["metric"],
            "mode": spec["mode"],
            "epochs": spec["searcher"]["max_resource"],
            "rows": table,
        }

    async def best(self, exp: Any) -> dict[str, Any] | None:
        return (await self.status(exp))["best"]  # type: ignore[no-any-return]

    async def events(self, exp: Any, after: int = 0, limit: int = -1) -> list[dict[str, Any]]:
        row = await experiment_row(self.store, exp)
        rows = await self.store.events(
            row.id, after=as_int(after, "after"), limit=as_int(limit, "limit")
        )
        return [views.event(e) for e in rows]

    async def metrics(self, trials: Any) -> dict[str, list[dict[str, Any]]]:
        ids = [as_int(t, "trials") for t in (trials if isinstance(trials, list) else [trials])]
        got = await self.store.metrics(ids)
        return {str(k): views.curve(v) for k, v in got.items()}

    async def ladder(self, exp: Any) -> list[dict[str, Any]]:
        exp_id = as_int(exp, "experiment")
        live = self.state.experiments.get(exp_id)
        if live is None:
            row = await experiment_row(self.store, exp_id)
            live = Experiment.new(
                row.id, parse_spec(json.loads(row.spec)), row.state, row.created_at
            )
            live.replay(
                await self.store.events(row.id, types=events.LADDER),
                await self.store.trials(row.id),
            )
        out = []
        for b in range(len(live.ladder.brackets)):
            for st in live.ladder.rung_stats(b):
                d = {k: getattr(st, k) for k in st.__dataclass_fields__}
                for k in ("cutoff_value", "best"):
                    if d.get(k) is not None:
                        d[k] = numbers.encode(d[k])
                out.append(d)
        return out

    async def gpus(self) -> list[dict[str, Any]]:
        holders: dict[str, list[int]] = {}
        for run in self.state.running.values():
            for slot in run.lease.slots:
                holders.setdefault(slot.name, []).append(run.trial.id)
        out = []
        for slot in self.slots.table.gpu_slots + self.slots.table.cpu_slots:
            g = self.slots.samples.get(slot.gpu.uuid) if slot.gpu else None
            out.append(
                {
                    "slot": slot.name,
                    "node": self.slots.nodes.get(slot.name),
                    "gpu": slot.gpu.index if slot.gpu else None,
                    "uuid": slot.gpu.uuid if slot.gpu else None,
                    "name": g.name if g else "cpu",
                    "utilization": g.utilization if g else None,
                    "memory_used_mb": g.memory_used_mb if g else None,
                    "memory_total_mb": g.memory_total_mb if g else None,
                    "trials": holders.get(slot.name, []),
                }
            )
        return out

    async def logs(self, trial: Any, offset: int = 0, limit: int = 1 << 19) -> dict[str, Any]:
        row = await self.store.trial(as_int(trial, "trial"))
        if row is None:
            raise HpdError(f"no trial {trial}")
        path = self.layout.trial_log(row.exp_id, row.id)
        legacy = self.layout.legacy_trial_log(row.exp_id, row.id)
        if not path.exists() and legacy.exists():  # a trial logged by an older hpd
            path = legacy
        offset, limit = (
            max(0, as_int(offset, "offset")),
            min(1 << 19, max(1, as_int(limit, "limit"))),
        )
        data = await asyncio.to_thread(_read_chunk, path, offset, limit)
        done = row.state in FINAL_TRIAL_STATES
        return {"text": data.decode(errors="replace"), "offset": offset + len(data), "final": done}

    async def export(self, exp: Any, format: str = "json") -> Any:
        trials = await self.trials(exp)
        curves = await self.store.metrics([t["id"] for t in trials])
        for t in trials:
            t["metrics"] = views.curve(curves.get(t["id"], []))
        if format == "csv":
            return {"csv": views.export_csv(trials)}
        if format != "json":
            raise HpdError(f"format: must be csv or json, got {format!r}")
        return {"experiment": await self.status(exp), "trials": trials}


def _read_chunk(path: Path, offset: int, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""
