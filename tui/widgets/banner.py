"""``Banner``: the one-line notice shown while the daemon cannot be reached."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static


class Banner(Static):
    """Hidden while connected; ``reason`` set means the daemon is away and polls retry."""

    reason: reactive[str | None] = reactive(None)

    def watch_reason(self, reason: str | None) -> None:
        self.display = reason is not None
        if reason is not None:
            self.update(f"⚠ daemon not reachable — retrying every second ({reason})")
