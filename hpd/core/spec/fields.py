"""Error collection, safe display of bad values, and the readers of single fields.

Owns ``_Errors`` (every problem as ``field.path: message[, got <value>]``, at most
``MAX_ERRORS`` of them), ``_show`` (a bounded one-line repr of untrusted input), and the field
readers (``_table``, ``_int``, ``_float``, ``_bool``, ``_enum``, ``_text``, ...): each checks one
field, records what is wrong, and returns a usable value (the default when invalid) so that
parsing goes on and reports every other problem too.

It must never: raise for bad input (record it in ``_Errors``; only ``parse_spec`` raises),
know about any section of the spec, do I/O, or import asyncio, sockets or sqlite.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from itertools import islice
from typing import Final, cast

from hpd.errors import SpecError

MAX_ERRORS: Final = 200  # errors kept; the rest are counted in one last line

_PLAIN_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


# --------------------------------------------------------------------------------------------
# Error collection and safe display of bad values
# --------------------------------------------------------------------------------------------


class _Missing:
    """Marks 'no value to show' in an error."""


_NO_VALUE: Final = _Missing()
_SHOW_STR: Final = 60
_SHOW_ITEMS: Final = 5


def _show(value: object, depth: int = 0) -> str:
    """A short, single-line, bounded repr: safe on huge ints, long strings, deep nesting."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        bits = value.bit_length()
        return repr(int(value)) if bits <= 128 else f"<integer of {bits} bits>"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, str | bytes):
        if len(value) > _SHOW_STR:
            return f"{value[:_SHOW_STR]!r}... ({len(value)} long)"
        return repr(value)
    if isinstance(value, list | tuple | Mapping):
        return _show_container(value, depth)
    try:
        text = repr(value)
    except Exception:  # a foreign object with a broken __repr__
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", " ")
    return text if len(text) <= 2 * _SHOW_STR else text[: 2 * _SHOW_STR] + "..."


def _show_container(
    value: list[object] | tuple[object, ...] | Mapping[object, object], depth: int
) -> str:
    kind, opening, closing = (
        ("table", "{", "}") if isinstance(value, Mapping) else ("list", "[", "]")
    )
    if depth >= 2:
        return f"<{kind} of {len(value)}>"
    if isinstance(value, Mapping):
        shown = [
            f"{_show(k, depth + 1)}: {_show(v, depth + 1)}"
            for k, v in islice(value.items(), _SHOW_ITEMS)
        ]
    else:
        shown = [_show(v, depth + 1) for v in value[:_SHOW_ITEMS]]
    if len(value) > _SHOW_ITEMS:
        shown.append(f"... ({len(value)} items)")
    return opening + ", ".join(shown) + closing


def _key_text(key: str) -> str:
    """A key as it appears in a field path: plain if simple, else quoted and bounded."""
    return key if _PLAIN_KEY_RE.fullmatch(key) else _show(key)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Errors:
    """Collects every problem as 'field.path: message[, got <value>]'."""

    __slots__ = ("bad", "dropped", "items")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.bad: set[str] = set()
        self.dropped = 0

    def add(self, path: str, msg: str, value: object = _NO_VALUE) -> None:
        path = path or "spec"
        self.bad.add(path)
        if len(self.items) >= MAX_ERRORS:
            self.dropped += 1
            return
        text = f"{path}: {msg}"
        if value is not _NO_VALUE:
            text += f", got {_show(value)}"
        self.items.append(text)

    def ok(self, *paths: str) -> bool:
        """True if none of ``paths`` has an error (guards cross-field checks)."""
        return not any(p in self.bad for p in paths)

    def ok_under(self, path: str) -> bool:
        """True if neither ``path`` nor anything below it has an error."""
        prefix = path + "."
        return path not in self.bad and not any(b.startswith(prefix) for b in self.bad)

    def error(self) -> SpecError:
        items = list(self.items)
        if self.dropped:
            items.append(f"spec: {self.dropped} more errors not shown")
        return SpecError(items)


# --------------------------------------------------------------------------------------------
# Field readers: each validates one field, records errors, and returns a usable value
# (the default when invalid, so parsing goes on and finds every other error).
# --------------------------------------------------------------------------------------------


def _table(errs: _Errors, raw: object, path: str, known: Collection[str]) -> dict[str, object]:
    """The known fields of a table; an error for a non-table and for every unknown key."""
    if not isinstance(raw, Mapping):
        errs.add(path, "must be a table (mapping)", raw)
        return {}
    out: dict[str, object] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            errs.add(path, "field names must be strings", key)
        elif key in known:
            out[key] = value
        else:
            errs.add(_join(path, _key_text(key)), "unknown field")
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _int(
    errs: _Errors,
    tbl: Mapping[str, object],
    path: str,
    key: str,
    default: int,
    lo: int,
    hi: int,
    *,
    cap: bool = False,
) -> int:
    """An integer in lo..hi. ``cap``: hi is a sanity cap, so messages say '>= lo'/'<= hi'."""
    if key not in tbl:
        return default
    p, v = _join(path, key), tbl[key]
    desc = f">= {lo}" if cap else f"in {lo}..{hi}"
    if not _is_int(v):
        errs.add(p, f"must be an integer {desc}", v)
        return default
    n = int(cast(int, v))
    if n < lo:
        errs.add(p, f"must be an integer {desc}", n)
    elif n > hi:
        errs.add(p, f"must be an integer {'<= ' + str(hi) if cap else desc}", n)
    else:
        return n
    return default


def _finite(errs: _Errors, p: str, v: object, what: str) -> float | None:
    """``v`` as a finite float, or None after recording why not."""
    if not _is_num(v):
        errs.add(p, f"must be {what}", v)
        return None
    try:
        f = float(cast(float, v))
    except OverflowError:  # an int beyond float range
        errs.add(p, "must be finite", v)
        return None
    if not math.isfinite(f):
        errs.add(p, "must be finite", f)
        return None
    return f


def _float(
    errs: _Errors,
    tbl: Mapping[str, object],
    path: str,
    key: str,
    default: float,
    *,
    gt: float,
    le: float,
) -> float:
    """A finite number with gt < x <= le (ints accepted, stored as float)."""
    if key not in tbl:
        return default
    p = _join(path, key)
    desc = f"> {gt:g} and <= {le:g}"
    f = _finite(errs, p, tbl[key], f"a number {desc}")
    if f is None:
        return default
    if not gt < f <= le:
        errs.add(p, f"must be {desc}", f)
        return default
    return f


def _bool(errs: _Errors, tbl: Mapping[str, object], path: str, key: str, default: bool) -> bool:
    if key not in tbl:
        return default
    v = tbl[key]
    if not isinstance(v, bool):
        errs.add(_join(path, key), "must be true or false", v)
        return default
    return v


def _enum(
    errs: _Errors,
    tbl: Mapping[str, object],
    path: str,
    key: str,
    default: str,
    options: tuple[str, ...],
) -> str:
    if key not in tbl:
        return default
    v = tbl[key]
    if not isinstance(v, str) or v not in options:
        errs.add(_join(path, key), "must be one of " + ", ".join(map(repr, options)), v)
        return default
    return str(v)


def _text(errs: _Errors, p: str, v: object, max_len: int, *, empty_ok: bool = False) -> bool:
    """Common string checks: a str, length, no NUL, encodable as UTF-8 (no lone surrogates)."""
    if not isinstance(v, str):
        errs.add(p, "must be a string", v)
        return False
    if not v and not empty_ok:
        errs.add(p, "must not be empty", v)
        return False
    if len(v) > max_len:
        errs.add(p, f"must be at most {max_len} characters", v)
        return False
    if "\x00" in v:
        errs.add(p, "must not contain NUL bytes", v)
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        errs.add(p, "must be valid Unicode (no lone surrogates)", v)
        return False
    return True
