"""What a running trial may record: fenced reports, checkpoint registrations, a segment's answer.

Owns the rules: only the segment's current attempt is heard (a stale attempt is refused and
never recorded), only epochs inside its segment, only numbers (NaN and inf kept explicitly as
such), only checkpoint names the trial API generated for this attempt. A warm worker's answer
may carry the segment's last reports and an inline checkpoint (never acknowledged on their
own): they pass the same rules and commit with the segment's result. Functions of the running
segment and the time they are given; the callers (``handlers.trials`` and the engine) write.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import Any

from hpd.core import numbers
from hpd.core.protocol import CHECKPOINT_NAME, INLINE_MAX
from hpd.core.records import INLINE, CheckpointRegistered, Op, Report, ReportsIn
from hpd.daemon.router import as_int
from hpd.daemon.state import DaemonState, Running
from hpd.errors import HpdError, ProtocolError
from hpd.io.paths import Layout

MAX_BATCH = 4096


def fenced(state: DaemonState, trial: Any, attempt: Any) -> Running:
    """The running segment that ``(trial, attempt)`` names, or a refusal (it is stale)."""
    run = state.running.get(as_int(trial, "trial"))
    if run is None or run.attempt != as_int(attempt, "attempt"):
        raise HpdError(f"stale attempt {attempt} of trial {trial}: refused, not recorded")
    return run


def parse_reports(run: Running, items: Any, now: float) -> list[Report]:
    if not isinstance(items, list) or len(items) > MAX_BATCH:
        raise HpdError(f"reports: must be a list of at most {MAX_BATCH} reports")
    return [_parse_report(run, item, now) for item in items]


def _parse_report(run: Running, item: Any, now: float) -> Report:
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
        values = {str(k): numbers.encode(numbers.decode(v)) for k, v in metrics.items()}
    except ProtocolError as exc:
        raise HpdError(f"metrics: {exc}") from None
    return Report(run.trial.id, epoch, run.attempt, now, json.dumps(values))


def reported(run: Running, parsed: list[Report], now: float) -> None:
    """Once reports are durable: progress, epoch, and the rung result if this is its epoch."""
    run.last_progress = now
    metric = run.exp.spec.metric
    for rep in parsed:
        run.trial.epoch = max(run.trial.epoch, rep.epoch)
        if rep.epoch == run.trial.target:
            values = json.loads(rep.data)
            if metric in values:
                run.result = numbers.decode(values[metric])


def registration(
    run: Running, layout: Layout, epoch: Any, name: Any, data: Any
) -> CheckpointRegistered:
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
    path = f"{layout.checkpoint_dir(run.exp.id, run.trial.id)}/{name}"
    if not os.path.isdir(path):
        raise HpdError(f"checkpoint {name!r} does not exist in the trial's checkpoint dir")
    return CheckpointRegistered(run.trial.id, epoch, path=path)


def registered(run: Running, reg: CheckpointRegistered) -> None:
    t = run.trial
    t.ckpt_path = INLINE if reg.data is not None else reg.path
    t.ckpt_epoch, t.ckpt_data = reg.epoch, reg.data


def end_of_segment(run: Running, layout: Layout, end: Mapping[str, Any], now: float) -> list[Op]:
    """What a warm worker's answer carried, validated like the calls it replaces and applied
    in memory; the caller commits the ops with the segment's result."""
    parsed = parse_reports(run, list(end.get("reports") or []), now)
    ops: list[Op] = [ReportsIn(tuple(parsed))] if parsed else []
    ckpt = end.get("checkpoint")
    if ckpt is not None:
        if not isinstance(ckpt, dict) or "data" not in ckpt:
            raise HpdError("checkpoint: only an inline checkpoint rides with the answer")
        reg = registration(run, layout, ckpt.get("epoch"), None, ckpt["data"])
        ops.append(reg)
        registered(run, reg)
    reported(run, parsed, now)
    return ops


def _inline_state(data: Any) -> bytes:
    if not isinstance(data, str) or len(data) > (INLINE_MAX + 2) // 3 * 4:
        raise HpdError(f"data: an inline checkpoint is base64 text of at most {INLINE_MAX} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HpdError("data: not valid base64") from None
