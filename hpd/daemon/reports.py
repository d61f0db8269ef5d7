"""The daemon's side of the trial API: fenced reports, checkpoint registration, timings.

Owns the rules for what a running trial may record: only its current attempt is heard (stale
attempts are refused and never recorded), only epochs inside its segment, only numbers (NaN and
inf kept explicitly as such), only checkpoint names the trial API generated for this attempt.
Every accepted message is durable before it is acknowledged. A warm worker's answer may carry
the segment's last reports and an inline checkpoint (never acknowledged on their own): they are
validated by the same rules and commit with the segment's result. A mixin of ``Daemon``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hpd.core import protocol
from hpd.core.protocol import CHECKPOINT_NAME, INLINE_MAX
from hpd.daemon.queries import as_int
from hpd.errors import HpdError, ProtocolError
from hpd.io.paths import Layout
from hpd.io.store import (
    INLINE,
    CheckpointRegistered,
    Op,
    Report,
    ReportsIn,
    Store,
    TrialUpdate,
)

if TYPE_CHECKING:
    from hpd.daemon.app import DaemonState, Running


class TrialOps:
    store: Store
    layout: Layout
    clock: Callable[[], float]
    s: DaemonState

    def _fenced(self, trial: Any, attempt: Any) -> Running:
        run = self.s.running.get(as_int(trial, "trial"))
        if run is None or run.attempt != as_int(attempt, "attempt"):
            raise HpdError(f"stale attempt {attempt} of trial {trial}: refused, not recorded")
        return run

    async def op_report(
        self, trial: Any, attempt: Any, reports: Any = None, epoch: Any = None, metrics: Any = None
    ) -> dict[str, Any]:
        """One report, or a batch (``reports``: [{epoch, metrics}]), committed together."""
        run = self._fenced(trial, attempt)
        items = reports if reports is not None else [{"epoch": epoch, "metrics": metrics}]
        parsed = self._parse_reports(run, items)
        await self.store.add_reports(parsed)
        self._reported(run, parsed)
        return {"stop": run.stop_reason is not None}

    def _parse_reports(self, run: Running, items: Any) -> list[Report]:
        if not isinstance(items, list) or len(items) > 4096:
            raise HpdError("reports: must be a list of at most 4096 reports")
        now = self.clock()
        return [self._parse_report(run, item, now) for item in items]

    def _reported(self, run: Running, parsed: list[Report]) -> None:
        """Once reports are durable: progress, epoch, and the rung result if this is its epoch."""
        run.last_progress = self.clock()
        metric = run.exp.spec.metric
        for rep in parsed:
            run.trial.epoch = max(run.trial.epoch, rep.epoch)
            if rep.epoch == run.trial.target:
                values = json.loads(rep.data)
                if metric in values:
                    run.result = protocol.decode_number(values[metric])

    def _parse_report(self, run: Running, item: Any, now: float) -> Report:
        if not isinstance(item, dict):
            raise HpdError("reports: each report must be an object")
        epoch = as_int(item.get("epoch"), "epoch")
        if not 1 <= epoch <= run.trial.target:
            raise HpdError(
                f"epoch {epoch} is outside this segment (1..{run.trial.target}):"
                f" the trial was not promoted beyond epoch {run.trial.target}"
            )
        metrics = item.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            raise HpdError("metrics: must be a non-empty object")
        try:
            values = {
                str(k): protocol.encode_number(protocol.decode_number(v))
                for k, v in metrics.items()
            }
        except ProtocolError as exc:
            raise HpdError(f"metrics: {exc}") from None
        return Report(run.trial.id, epoch, run.attempt, now, json.dumps(values))

    async def op_checkpoint(
        self,
        trial: Any,
        attempt: Any,
        epoch: Any,
        name: Any = None,
        reports: Any = (),
        data: Any = None,
    ) -> dict[str, Any]:
        run = self._fenced(trial, attempt)
        reg = self._registration(run, epoch, name, data)
        parsed = self._parse_reports(run, list(reports or []))
        await self.store.commit("checkpoint", [ReportsIn(tuple(parsed)), reg])
        self._registered(run, reg)
        self._reported(run, parsed)
        return {"registered": True}

    def _registration(self, run: Running, epoch: Any, name: Any, data: Any) -> CheckpointRegistered:
        """A checkpoint the trial API wrote: a directory of this attempt, or an inline state."""
        epoch = as_int(epoch, "epoch")
        if not 1 <= epoch <= run.trial.target:
            raise HpdError(f"epoch {epoch} is outside this segment (1..{run.trial.target})")
        if (name is None) == (data is None):
            raise HpdError("checkpoint: give exactly one of name (a directory) and data (inline)")
        if data is not None:
            return CheckpointRegistered(run.trial.id, epoch, data=_inline_state(data))
        m = CHECKPOINT_NAME.match(str(name))
        if m is None or int(m.group(2)) != run.attempt:
            raise HpdError(f"checkpoint name {name!r} was not generated for this attempt")
        path = f"{self.layout.checkpoint_dir(run.exp.id, run.trial.id)}/{name}"
        if not os.path.isdir(path):
            raise HpdError(f"checkpoint {name!r} does not exist in the trial's checkpoint dir")
        return CheckpointRegistered(run.trial.id, epoch, path=path)

    def _registered(self, run: Running, reg: CheckpointRegistered) -> None:
        t = run.trial
        t.ckpt_path = INLINE if reg.data is not None else reg.path
        t.ckpt_epoch, t.ckpt_data = reg.epoch, reg.data

    def _end_of_segment(self, run: Running, end: Mapping[str, Any]) -> list[Op]:
        """What a warm worker's answer carried, validated like the calls it replaces and
        applied in memory; the caller commits the ops with the segment's result."""
        parsed = self._parse_reports(run, list(end.get("reports") or []))
        ops: list[Op] = [ReportsIn(tuple(parsed))] if parsed else []
        ckpt = end.get("checkpoint")
        if ckpt is not None:
            if not isinstance(ckpt, dict) or "data" not in ckpt:
                raise HpdError("checkpoint: only an inline checkpoint rides with the answer")
            reg = self._registration(run, ckpt.get("epoch"), None, ckpt["data"])
            ops.append(reg)
            self._registered(run, reg)
        self._reported(run, parsed)
        return ops

    async def op_timing(self, trial: Any, attempt: Any, timing: Any) -> dict[str, Any]:
        run = self._fenced(trial, attempt)
        if not isinstance(timing, dict):
            raise HpdError("timing: must be an object")
        text = json.dumps(timing, allow_nan=False)
        if len(text) > 4096:
            raise HpdError("timing: too large")
        await self.store.commit("timing", [TrialUpdate(run.trial.id, {"subset": text})])
        run.last_progress = self.clock()
        return {}


def _inline_state(data: Any) -> bytes:
    if not isinstance(data, str) or len(data) > (INLINE_MAX + 2) // 3 * 4:
        raise HpdError(f"data: an inline checkpoint is base64 text of at most {INLINE_MAX} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HpdError("data: not valid base64") from None
