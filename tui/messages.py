"""Every message the TUI's workers post: the only way fetched data reaches the widgets.

Polls arrive at about one a second; ``can_replace`` coalesces any that pile up behind a busy
render, so the UI only ever paints the newest state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class DaemonPolled(Message):
    """The daemon-wide view: experiments (``ls``) and GPU slots (``gpus``)."""

    experiments: list[dict[str, Any]]
    gpus: list[dict[str, Any]]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DaemonPolled)


@dataclass
class ExperimentPolled(Message):
    """The open experiment: status, trials, ladder, and curves of running/selected trials."""

    status: dict[str, Any]
    trials: list[dict[str, Any]]
    ladder: list[dict[str, Any]]
    curves: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExperimentPolled) and message.status.get(
            "id"
        ) == self.status.get("id")


@dataclass
class DaemonLost(Message):
    """A poll failed to reach the daemon; the workers keep retrying."""

    reason: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DaemonLost)


@dataclass
class DaemonBack(Message):
    """A poll reached the daemon again after a ``DaemonLost``."""
