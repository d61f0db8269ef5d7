"""JSON views of experiments, trials and events: the ``--json`` contract.

Owns the shape of every answer the daemon gives about its state (keys documented in the
README). Pure: built from store rows, no I/O; the best trial is ``hpd.core.ranking``'s.
Non-finite metric values are sent as the strings "nan", "inf", "-inf" so the JSON stays
standard.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from hpd.core import ranking
from hpd.core.numbers import encode as encode_number
from hpd.core.records import EventRow, ExperimentRow, TrialRow


def _best(
    mode: str, trials: Iterable[TrialRow], results: Mapping[int, Mapping[int, float]]
) -> dict[str, Any] | None:
    top = ranking.best(mode, trials, results)
    return None if top is None else top.as_dict()


def status(
    exp: ExperimentRow,
    trials: list[TrialRow],
    results: Mapping[int, Mapping[int, float]],
    now: float,
) -> dict[str, Any]:
    spec = json.loads(exp.spec)
    end = exp.ended_at if exp.ended_at is not None else now
    return {
        "id": exp.id,
        "name": exp.name,
        "state": exp.state,
        "trials": dict(Counter(t.state for t in trials)),
        "best": _best(spec["mode"], trials, results),
        "metric": spec["metric"],
        "mode": spec["mode"],
        "searcher": spec["searcher"]["name"],
        "max_trials": spec["searcher"]["max_trials"],
        "created_at": exp.created_at,
        "elapsed_s": round(end - exp.created_at, 3),
        "parent": exp.parent_id,
    }


def trial(t: TrialRow, results: Mapping[int, float], run_s: float = 0.0) -> dict[str, Any]:
    return {
        "id": t.id,
        "index": t.idx,
        "state": t.state,
        "rung": t.rung,
        "resource": t.target,
        "epoch": t.epoch,
        "params": json.loads(t.params),
        "results": {str(r): encode_number(v) for r, v in sorted(results.items())},
        "gpu": t.gpu,
        "attempts": t.attempts,
        "restarts": t.restarts,
        "bracket": t.bracket,
        "error": t.error,
        "checkpoint_epoch": t.ckpt_epoch,
        "subset": json.loads(t.subset) if t.subset else None,
        "run_s": round(run_s, 3),
    }


def event(ev: EventRow) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": ev.seq, "time": ev.time, "type": ev.type, "trial": ev.trial_id}
    out.update(json.loads(ev.data))
    return out


def curve(rows: list[tuple[int, str]]) -> list[dict[str, Any]]:
    return [{"epoch": epoch, **json.loads(data)} for epoch, data in rows]


def export_csv(trials: list[dict[str, Any]]) -> str:
    """One row per (trial, epoch): params and every metric as columns."""
    params = sorted({k for t in trials for k in t["params"]})
    metrics = sorted({k for t in trials for m in t["metrics"] for k in m if k != "epoch"})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trial", "state", "rung", "epoch", *params, *metrics])
    for t in trials:
        for m in t["metrics"] or [{"epoch": ""}]:
            row = [t["id"], t["state"], t["rung"], m["epoch"]]
            row += [t["params"].get(p, "") for p in params]
            row += [m.get(k, "") for k in metrics]
            w.writerow(row)
    return buf.getvalue()
