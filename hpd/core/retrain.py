"""Top-k retraining: which configurations of a finished search to retrain, and how.

Owns the choice of the top k (by ``hpd.core.ranking``, the rule of ``hpd best``), the spec
of the linked experiment that retrains the top k on the full data, and the rows that put
each retrained configuration beside its search result.

The retrain spec is an ordinary spec (``searcher.sampler = "fixed"`` with the chosen
``configs``): it can be read with ``hpd status``, exported, and submitted again by hand. It
runs every configuration straight to ``epochs`` (one rung, no early stopping) with
``[subset] strategy = "none"``, so the comparison between scenarios is made on full data.

Pure: no I/O, no clock. It must never decide anything the ladder decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpd.core.numbers import encode as encode_number
from hpd.core.ranking import Ranked, rank
from hpd.core.records import TrialRow
from hpd.core.spec import MAX_NAME_LEN, Spec, parse_spec
from hpd.errors import HpdError

__all__ = ["MAX_TOP", "Pick", "rank", "retrain_spec", "rows", "validate_request"]

MAX_TOP = 10_000
MAX_EPOCHS = 10**9  # the spec's own bound on max_resource
SUFFIX = "-retrain"


# One configuration chosen for retraining, with the search result that chose it.
Pick = Ranked


def validate_request(top: object, epochs: object) -> tuple[int, int]:
    """``(top, epochs)`` as integers, or an error naming the bad argument."""
    for name, v, hi in (("top", top, MAX_TOP), ("epochs", epochs, MAX_EPOCHS)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise HpdError(f"{name}: must be an integer in 1..{hi}, got {v!r}")
    return int(top), int(epochs)  # type: ignore[call-overload]


def retrain_spec(
    parent: Mapping[str, Any],
    picks: list[Pick],
    *,
    epochs: int,
    metric: str | None = None,
    mode: str | None = None,
) -> Spec:
    """The spec that trains ``picks``' configurations for ``epochs``
    epochs on the full data. Raises ``SpecError`` naming the field if ``metric`` or ``mode``
    is invalid."""
    if not picks:
        raise HpdError("the experiment has no finite result to retrain from")
    spec = dict(parent)
    spec["name"] = str(parent["name"])[: MAX_NAME_LEN - len(SUFFIX)] + SUFFIX
    spec["metric"] = parent["metric"] if metric is None else metric
    spec["mode"] = parent["mode"] if mode is None else mode
    searcher = dict(parent["searcher"])
    searcher.pop("sampler_options", None)  # the parent's model options; "fixed" takes none
    searcher.update(
        name="random",  # one rung: every configuration runs to `epochs`, none is stopped
        max_trials=len(picks),
        min_resource=epochs,
        max_resource=epochs,
        brackets="aggressive",
        sampler="fixed",
    )
    spec["searcher"] = searcher
    spec["subset"] = {"strategy": "none", "fraction": 1.0}
    spec["configs"] = [p.params for p in picks]
    return parse_spec(spec)


def rows(
    trials: list[TrialRow],
    picks: list[Mapping[str, Any]],
    results: Mapping[int, Mapping[int, float]],
    finals: Mapping[int, Mapping[str, Any]],
    run_s: Mapping[int, float],
) -> list[dict[str, Any]]:
    """One row per retrained configuration, in the order of the ranking: its search result
    (``parent_trial``, ``search_value``, ``search_rung``) beside its retraining (``trial``,
    ``state``, ``value`` at the final epoch, every metric reported at the last epoch it
    reached, ``run_s``)."""
    by_index = {t.idx: t for t in trials}
    out = []
    for i, pick in enumerate(picks):
        t = by_index.get(i)
        top = results.get(t.id, {}) if t else {}
        value = top[max(top)] if top else None
        out.append(
            {
                "rank": i + 1,
                "parent_trial": pick["trial"],
                "search_value": encode_number(pick["value"]),
                "search_rung": pick["rung"],
                "params": pick["params"],
                "trial": t.id if t else None,
                "state": t.state if t else "pending",
                "epoch": t.epoch if t else 0,
                "value": None if value is None else encode_number(value),
                "metrics": dict(finals.get(t.id, {})) if t else {},
                "run_s": round(run_s.get(t.id, 0.0), 3) if t else 0.0,
            }
        )
    return out
