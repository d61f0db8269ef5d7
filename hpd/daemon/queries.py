"""The daemon's read-only requests: experiments, trials, events, the ladder, GPUs, logs, export.

Owns the answers to questions about state (the ``--json`` views come from ``hpd.core.views``).
Must never change state: everything that writes lives in ``hpd.daemon``. A mixin of ``Daemon``,
so it sees the daemon's store, clock, live experiments and slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpd.core import protocol, retrain, views
from hpd.core.experiment import FINAL_TRIAL_STATES, Experiment
from hpd.core.spec import parse_spec
from hpd.errors import HpdError
from hpd.io import gpus
from hpd.io.paths import Layout
from hpd.io.store import LADDER_EVENTS, Store

if TYPE_CHECKING:
    from hpd.daemon.app import DaemonState


class QueryOps:
    store: Store
    layout: Layout
    clock: Callable[[], float]
    s: DaemonState
    slots: gpus.SlotTable
    samples: dict[str, gpus.GpuInfo]

    async def _exp_row(self, exp: Any) -> Any:
        exp_id = as_int(exp, "experiment")
        row = await self.store.experiment(exp_id)
        if row is None:
            raise HpdError(f"no experiment {exp_id}")
        return row

    async def op_wait(self, exp: Any, timeout: Any = 30.0) -> dict[str, Any]:
        """Long poll: the experiment's status once it has ended, or after ``timeout`` seconds."""
        exp_id = as_int(exp, "experiment")
        limit = min(max(float(timeout), 0.0), 300.0) if isinstance(timeout, (int, float)) else 30.0
        # The predicate is checked under the condition's lock, and an experiment leaves the
        # live set before the notification: an end between check and wait cannot be missed.
        async with self.s.ended:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit):
                    await self.s.ended.wait_for(lambda: exp_id not in self.s.experiments)
        return await self.op_status(exp_id)

    async def op_ls(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        for row in await self.store.experiments():
            trials = await self.store.trials(row.id)
            out.append(views.status(row, trials, await self.store.results(row.id), now))
        return out

    async def op_status(self, exp: Any) -> dict[str, Any]:
        row = await self._exp_row(exp)
        trials = await self.store.trials(row.id)
        return views.status(row, trials, await self.store.results(row.id), self.clock())

    async def op_trials(self, exp: Any) -> list[dict[str, Any]]:
        row = await self._exp_row(exp)
        results = await self.store.results(row.id)
        run_s = await self.store.run_seconds(row.id, self.clock())
        return [
            views.trial(t, results.get(t.id, {}), run_s.get(t.id, 0.0))
            for t in await self.store.trials(row.id)
        ]

    async def op_retrained(self, exp: Any) -> dict[str, Any]:
        """A retraining experiment's configurations beside the search results that chose them."""
        row = await self._exp_row(exp)
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

    async def op_best(self, exp: Any) -> dict[str, Any] | None:
        return (await self.op_status(exp))["best"]  # type: ignore[no-any-return]

    async def op_events(self, exp: Any, after: int = 0, limit: int = -1) -> list[dict[str, Any]]:
        row = await self._exp_row(exp)
        rows = await self.store.events(
            row.id, after=as_int(after, "after"), limit=as_int(limit, "limit")
        )
        return [views.event(e) for e in rows]

    async def op_metrics(self, trials: Any) -> dict[str, list[dict[str, Any]]]:
        ids = [as_int(t, "trials") for t in (trials if isinstance(trials, list) else [trials])]
        got = await self.store.metrics(ids)
        return {str(k): views.curve(v) for k, v in got.items()}

    async def op_ladder(self, exp: Any) -> list[dict[str, Any]]:
        exp_id = as_int(exp, "experiment")
        live = self.s.experiments.get(exp_id)
        if live is None:
            row = await self._exp_row(exp_id)
            live = Experiment.new(
                row.id, parse_spec(json.loads(row.spec)), row.state, row.created_at
            )
            live.replay(
                await self.store.events(row.id, types=LADDER_EVENTS),
                await self.store.trials(row.id),
            )
        out = []
        for b in range(len(live.ladder.brackets)):
            for st in live.ladder.rung_stats(b):
                d = {k: getattr(st, k) for k in st.__dataclass_fields__}
                for k in ("cutoff_value", "best"):
                    if d.get(k) is not None:
                        d[k] = protocol.encode_number(d[k])
                out.append(d)
        return out

    async def op_gpus(self) -> list[dict[str, Any]]:
        holders: dict[str, list[int]] = {}
        for run in self.s.running.values():
            for slot in run.lease.slots:
                holders.setdefault(slot.name, []).append(run.trial.id)
        out = []
        for slot in self.slots.gpu_slots + self.slots.cpu_slots:
            g = self.samples.get(slot.gpu.uuid) if slot.gpu else None
            out.append(
                {
                    "slot": slot.name,
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

    async def op_logs(self, trial: Any, offset: int = 0, limit: int = 1 << 19) -> dict[str, Any]:
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

    async def op_export(self, exp: Any, format: str = "json") -> Any:
        trials = await self.op_trials(exp)
        curves = await self.store.metrics([t["id"] for t in trials])
        for t in trials:
            t["metrics"] = views.curve(curves.get(t["id"], []))
        if format == "csv":
            return {"csv": views.export_csv(trials)}
        if format != "json":
            raise HpdError(f"format: must be csv or json, got {format!r}")
        return {"experiment": await self.op_status(exp), "trials": trials}


def as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise HpdError(f"{name}: must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise HpdError(f"{name}: must be an integer, got {value!r}")


def _read_chunk(path: Path, offset: int, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""
