"""Fault injection for the reliability tests: ``HPD_FAULT=crash:LABEL:N``.

Owns the crash points only. Off unless the variable is set; when set, the N-th time the daemon
reaches the labelled point it dies at once with ``os._exit(137)``, as a SIGKILL would leave it.
Several faults may be given, separated by commas.
"""

from __future__ import annotations

import os

_counts: dict[str, int] = {}
_targets: dict[str, int] = {}


def _load() -> None:
    spec = os.environ.get("HPD_FAULT", "")
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, rest = part.partition(":")
        label, _, nth = rest.rpartition(":")
        if kind == "crash" and label and nth.isdigit():
            _targets[label] = int(nth)


_load()


def point(label: str) -> None:
    """Mark a crash point; dies here if HPD_FAULT names it and this is the N-th time."""
    if not _targets:
        return
    target = _targets.get(label)
    if target is None:
        return
    n = _counts.get(label, 0) + 1
    _counts[label] = n
    if n == target:
        os._exit(137)
