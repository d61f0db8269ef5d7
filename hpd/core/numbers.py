"""Metric values that may be NaN or infinite: the one place that knows how to write, read,
store and compare them.

A trial may report NaN or inf (a diverged run); hpd keeps such values instead of dropping them,
ranks them below every finite value, and sends them over JSON as the strings "nan", "inf" and
"-inf" (JSON has no such numbers), and stores them in SQLite as a NULL value with a ``kind``.
Pure: no I/O. Every other module asks here rather than testing ``x != x`` itself.
"""

from __future__ import annotations

import math

from hpd.errors import ProtocolError

NON_FINITE = ("nan", "inf", "-inf")  # their wire form, and the store's ``kind`` column
KINDS = ("finite", *NON_FINITE)


def is_finite(value: float) -> bool:
    return math.isfinite(value)


def kind(value: float) -> str:
    """``finite``, ``nan``, ``inf`` or ``-inf``: how the store tells them apart."""
    if math.isfinite(value):
        return "finite"
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def from_kind(value: float | None, kind_: str) -> float:
    """The value the store's ``(value, kind)`` pair means."""
    return float(value) if kind_ == "finite" and value is not None else float(kind_)


def encode(value: float) -> float | str:
    """A value for JSON: finite floats as numbers, the rest as 'nan', 'inf', '-inf'."""
    k = kind(value)
    return value if k == "finite" else k


def decode(value: object) -> float:
    """Inverse of ``encode``; raises ProtocolError on anything that is not a number."""
    if isinstance(value, bool):
        raise ProtocolError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in NON_FINITE:
        return float(value)
    raise ProtocolError(f"not a number: {value!r}")


def better(mode: str, a: float, b: float) -> bool:
    """Whether ``a`` beats ``b`` under ``mode`` ("max" or "min"); both finite."""
    return a > b if mode == "max" else a < b
