"""Fault injection for the reliability tests: ``HPD_FAULT=crash:LABEL:N``.

Owns the crash points only. Off unless the variable is set; when set, the N-th time the daemon
reaches the labelled point it dies at once with ``os._exit(137)``, as a SIGKILL would leave it.
``fail:LABEL:N`` instead makes that one commit fail with an I/O error (the daemon lives on).
``diskfull:PATH`` makes every ``before_commit:*`` point raise SQLite's "database or disk is full"
for as long as the file PATH exists (the test creates it to fill the disk, removes it to free
space). Several faults may be given, separated by commas.
"""

from __future__ import annotations

import os

from hpd.errors import StoreError

_counts: dict[str, int] = {}
_targets: dict[str, int] = {}
_failures: dict[str, int] = {}
_full_flags: list[str] = []


def _load() -> None:
    spec = os.environ.get("HPD_FAULT", "")
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, rest = part.partition(":")
        label, _, nth = rest.rpartition(":")
        if kind == "crash" and label and nth.isdigit():
            _targets[label] = int(nth)
        elif kind == "fail" and label and nth.isdigit():
            _failures[label] = int(nth)
        elif kind == "diskfull" and rest:
            _full_flags.append(rest)


_load()


def point(label: str) -> None:
    """Mark a crash point; dies here if HPD_FAULT names it and this is the N-th time."""
    full = _full_flags and label.startswith("before_commit:")
    if full and any(os.path.exists(f) for f in _full_flags):
        raise StoreError("database or disk is full")
    if not (_targets or _failures):
        return
    n = _counts.get(label, 0) + 1
    _counts[label] = n
    if n == _targets.get(label):
        os._exit(137)
    if n == _failures.get(label):
        raise StoreError("disk I/O error (injected)")
