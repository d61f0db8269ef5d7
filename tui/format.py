"""Pure formatting for the TUI: numbers, bars, trial rows, filters, sort keys and braille plots.

Rules: nothing here imports Textual or talks to the daemon; every function maps plain JSON (as
the daemon sends it) to strings or tuples, so it is testable without an event loop. Non-finite
numbers arrive as the strings "nan"/"inf"/"-inf" and are shown as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpd.client import FINAL_TRIAL_STATES

TRIAL_STATES = ("running", "queued", "paused", "completed", "stopped", "failed", "cancelled")
STATE_STYLE = {
    "running": "bold green",
    "queued": "dim",
    "paused": "yellow",
    "promotable": "bold cyan",
    "completed": "blue",
    "stopped": "dim",
    "failed": "bold red",
    "cancelled": "magenta",
}
BRAILLE_BASE = 0x2800
# Braille dot bits for (column, row) inside one 2x4 cell.
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def number(value: Any) -> float | None:
    """A metric value as a float ("nan"/"inf" strings included); None when absent."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def fmt(value: Any, digits: int = 4) -> str:
    """Compact human form: floats to ``digits`` significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    x = number(value)
    if x is None:
        return str(value)
    if not math.isfinite(x):
        return str(value) if isinstance(value, str) else repr(x)
    return f"{x:.{digits}g}"


def duration(seconds: Any) -> str:
    """Seconds as ``1h02m``, ``3m05s`` or ``4.2s``."""
    s = number(seconds)
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (eighth-block precision)."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    tail = " ▏▎▍▌▋▊▉"[part] if part and full < width else ""
    return ("█" * full + tail).ljust(width)


def progress(status: Mapping[str, Any]) -> str:
    """``finished/max`` trials plus a count per non-zero state, e.g. ``12/81 run 4 done 8``."""
    counts: Mapping[str, int] = status.get("trials") or {}
    done = sum(counts.get(k, 0) for k in FINAL_TRIAL_STATES)
    short = {"running": "run", "queued": "q", "paused": "wait", "completed": "done"}
    parts = [f"{short.get(k, k)} {counts[k]}" for k in TRIAL_STATES if counts.get(k)]
    return f"{done}/{status.get('max_trials', '?')} " + " ".join(parts)


def experiment_row(status: Mapping[str, Any]) -> tuple[str, ...]:
    best = status.get("best") or {}
    return (
        str(status["id"]),
        str(status.get("name", "")),
        str(status.get("state", "")),
        progress(status),
        fmt(best.get("value")) + (f" (#{best['trial']})" if best else ""),
        duration(status.get("elapsed_s")),
    )


def rung_values(results: Mapping[str, Any]) -> str:
    return " ".join(
        f"r{r}:{fmt(v, 3)}" for r, v in sorted(results.items(), key=lambda kv: int(kv[0]))
    )


def better_or_equal(mode: str, a: float, b: float) -> bool:
    return a >= b if mode == "max" else a <= b


def display_state(trial: Mapping[str, Any], cutoffs: Mapping[int, float], mode: str) -> str:
    """``promotable`` for a paused trial whose value at its rung makes the rung's cutoff.

    The daemon reports waiting trials as ``paused``; the ladder's cutoff values tell which of
    them are in their rung's top 1/eta (an estimate: the daemon may promote in between polls).
    """
    state = str(trial.get("state", ""))
    if state != "paused":
        return state
    value = number((trial.get("results") or {}).get(str(trial.get("rung"))))
    cut = cutoffs.get(int(trial.get("rung") or 0))
    if value is not None and cut is not None and better_or_equal(mode, value, cut):
        return "promotable"
    return state


def cutoffs_by_rung(ladder: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Rung -> cutoff value (bracket 0, or the loosest over brackets) from ``ladder`` rows."""
    out: dict[int, float] = {}
    for row in ladder:
        value = number(row.get("cutoff_value"))
        if value is not None and math.isfinite(value):
            out.setdefault(int(row["rung"]), value)
    return out


def latest(trial: Mapping[str, Any], curve: Sequence[Mapping[str, Any]] | None, metric: str) -> Any:
    """The last reported value: from the live curve when fetched, else the highest rung's."""
    if curve:
        return curve[-1].get(metric)
    results: Mapping[str, Any] = trial.get("results") or {}
    if not results:
        return None
    return results[max(results, key=int)]


def trial_row(
    trial: Mapping[str, Any],
    params: Sequence[str],
    state: str,
    latest_value: Any,
) -> tuple[str, ...]:
    """The cells of one trials-table row (see ``trial_columns``)."""
    p: Mapping[str, Any] = trial.get("params") or {}
    return (
        str(trial["id"]),
        state,
        str(trial.get("rung", "")),
        str(trial.get("epoch", "")),
        fmt(latest_value),
        str(trial.get("gpu") or "-"),
        str(trial.get("attempts", "")),
        *(fmt(p.get(k)) for k in params),
        rung_values(trial.get("results") or {}),
    )


def trial_columns(params: Sequence[str]) -> tuple[str, ...]:
    return ("id", "state", "rung", "epoch", "latest", "gpu", "att", *params, "rung values")


def main_params(trials: Sequence[Mapping[str, Any]], limit: int = 4) -> list[str]:
    """The params that vary across trials (constant ones say nothing), at most ``limit``."""
    seen: dict[str, set[str]] = {}
    for t in trials[:200]:
        for k, v in (t.get("params") or {}).items():
            seen.setdefault(k, set()).add(repr(v))
    varying = [k for k, vs in seen.items() if len(vs) > 1]
    return (varying or list(seen))[:limit]


def matches(cells: Sequence[str], query: str) -> bool:
    """Every whitespace-separated token of ``query`` is a substring of some cell (any case).

    ``col=value`` tokens are not special: ``running`` already matches the state column.
    """
    lowered = [c.lower() for c in cells]
    return all(any(tok in c for c in lowered) for tok in query.lower().split())


def sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers before text, numbers by value: so ``10`` sorts after ``9``."""
    text = str(value)
    x = number(text.split(" ")[0])
    if x is None or math.isnan(x):
        return (1, 0.0, text)
    return (0, x, text)


def subset_row(trial: Mapping[str, Any]) -> tuple[str, ...]:
    """Strategy, fraction, selection and epoch seconds, and the time saved when known.

    Time saved per epoch needs a full-data epoch time (``full_epoch_s`` in the timing record);
    without it the column estimates ``epoch_s / fraction`` as the full epoch and marks it ``~``.
    """
    s: Mapping[str, Any] = trial.get("subset") or {}
    frac = number(s.get("fraction"))
    epoch = number(s.get("epoch_s"))
    sel = number(s.get("selection_s")) or 0.0
    full = number(s.get("full_epoch_s"))
    saved = "-"
    if epoch is not None and full is not None:
        saved = duration(full - epoch - sel)
    elif epoch is not None and frac:
        saved = "~" + duration(epoch / frac - epoch - sel)
    return (
        str(trial["id"]),
        str(s.get("strategy", "-")),
        fmt(frac, 3),
        duration(s.get("selection_s")),
        duration(s.get("epoch_s")),
        saved,
        duration(s.get("selection_total_s")),
        str(s.get("subset_size", "-")),
        str(trial.get("state", "")),
    )


SUBSET_COLUMNS = (
    "id",
    "strategy",
    "fraction",
    "select",
    "epoch",
    "saved/epoch",
    "select Σ",
    "size",
    "state",
)


@dataclass(frozen=True, slots=True)
class Plot:
    """Braille rows, the series index owning each cell (-1 when empty) and the data bounds."""

    rows: list[str]
    owners: list[list[int]]
    bounds: tuple[float, float, float, float]


def braille_plot(series: Sequence[Sequence[tuple[float, float]]], width: int, height: int) -> Plot:
    """Plot point series into ``height`` rows of ``width`` braille cells (2x4 dots each).

    Points are joined by straight segments so sparse curves read as lines; a cell shared by
    several series belongs to the last one drawn. Bounds are (x0, x1, y0, y1).
    """
    pts = [(x, y) for s in series for x, y in s if math.isfinite(y)]
    width, height = max(width, 1), max(height, 1)
    owners = [[-1] * width for _ in range(height)]
    dots = [[0] * width for _ in range(height)]
    if not pts:
        return Plot([" " * width] * height, owners, (0.0, 1.0, 0.0, 1.0))
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    w, h = width * 2, height * 4
    for idx, s in enumerate(series):
        scaled = [
            (round((x - x0) / (x1 - x0) * (w - 1)), round((y1 - y) / (y1 - y0) * (h - 1)))
            for x, y in s
            if math.isfinite(y)
        ]
        for (ax, ay), (bx, by) in zip(scaled, scaled[1:] or scaled, strict=False):
            steps = max(abs(bx - ax), abs(by - ay), 1)
            for i in range(steps + 1):
                px, py = ax + (bx - ax) * i // steps, ay + (by - ay) * i // steps
                dots[py // 4][px // 2] |= _DOTS[px % 2][py % 4]
                owners[py // 4][px // 2] = idx
    rows = ["".join(chr(BRAILLE_BASE + d) if d else " " for d in row) for row in dots]
    return Plot(rows, owners, (x0, x1, y0, y1))
