"""Which trial of a search is best: the one rule behind ``hpd best``, the status's ``best``
and the picks of ``hpd retrain``.

A trial ranks by the highest rung at which it has a finite result, then by that result (by the
search's mode), then by the lower trial id (the earlier configuration wins a tie). NaN and inf
never rank. Pure: built from store rows, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hpd.core import numbers
from hpd.core.records import TrialRow


@dataclass(frozen=True, slots=True)
class Ranked:
    """One trial's standing: its best rung with a finite result, and that result."""

    trial: int
    params: dict[str, Any]
    rung: int
    value: float

    def as_dict(self) -> dict[str, Any]:
        return {"trial": self.trial, "value": self.value, "params": self.params, "rung": self.rung}


def rank(
    mode: str, trials: Iterable[TrialRow], results: Mapping[int, Mapping[int, float]]
) -> list[Ranked]:
    """Every trial with a finite result, best first."""
    out = []
    for t in trials:
        finite = {r: v for r, v in results.get(t.id, {}).items() if numbers.is_finite(v)}
        if finite:
            rung = max(finite)
            out.append(Ranked(t.id, json.loads(t.params), rung, finite[rung]))
    sign = -1.0 if mode == "max" else 1.0
    return sorted(out, key=lambda p: (-p.rung, sign * p.value, p.trial))


def best(
    mode: str, trials: Iterable[TrialRow], results: Mapping[int, Mapping[int, float]]
) -> Ranked | None:
    ranked = rank(mode, trials, results)
    return ranked[0] if ranked else None
