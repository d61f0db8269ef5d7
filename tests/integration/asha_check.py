"""An independent checker of promotion-based ASHA decisions, from `hpd events --json` alone.

It does not use hpd.core.asha: it rebuilds each rung's results from the event log and checks every
promotion against the rules of DESIGN §2 (top floor(n/eta), ceil in drain; highest rung first;
ties to the earlier-recorded result; never a non-finite value; never twice from a rung).
"""

from __future__ import annotations

import math
from typing import Any


def _num(v: Any) -> float:
    return float(v)


def check_asha(events: list[dict[str, Any]], eta: int, mode: str, n_rungs: int) -> int:
    """Raises AssertionError on the first invalid decision; returns the number of promotions."""
    sign = -1.0 if mode == "max" else 1.0
    rungs: dict[int, list[tuple[float, int, int]]] = {k: [] for k in range(n_rungs)}
    promoted: dict[int, set[int]] = {k: set() for k in range(n_rungs)}
    order = 0
    count = 0

    def ranked(k: int) -> list[tuple[float, int, int]]:
        def key(e: tuple[float, int, int]) -> tuple[int, float, int, int]:
            v, seq, trial = e
            return (0 if math.isfinite(v) else 1, sign * v if math.isfinite(v) else 0.0, seq, trial)

        return sorted(rungs[k], key=key)

    def promotable(k: int, cut: int) -> list[int]:
        top = ranked(k)[:cut]
        return [t for v, _, t in top if math.isfinite(v) and t not in promoted[k]]

    for ev in events:
        if ev["type"] == "result":
            order += 1
            rungs[ev["rung"]].append((_num(ev["value"]), order, ev["trial"]))
        elif ev["type"] == "promoted":
            k, trial, reason = ev["rung"], ev["trial"], ev["reason"]
            n = len(rungs[k])
            cut = math.ceil(n / eta) if reason["drain"] else n // eta
            assert ev["to_rung"] == k + 1, ev
            assert reason["population"] == n, (ev, n)
            assert reason["cutoff"] == cut, (ev, cut)
            cands = promotable(k, cut)
            assert cands and cands[0] == trial, f"promoted {trial} from rung {k}, expected {cands[:1]}: {ev}"
            for higher in range(k + 1, n_rungs - 1):
                hc = promotable(higher, math.ceil(len(rungs[higher]) / eta) if reason["drain"] else len(rungs[higher]) // eta)
                assert not hc, f"rung {higher} had promotable {hc} when {trial} left rung {k}"
            promoted[k].add(trial)
            count += 1
        elif ev["type"] == "trial_created":
            for k in range(n_rungs - 1):
                assert not promotable(k, len(rungs[k]) // eta), f"new trial while rung {k} had a promotion: {ev}"
    return count
