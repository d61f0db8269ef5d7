"""The trial of the live TUI tests (entrypoint ``tests.tui.trials:held``).

The synthetic trial (``params.sleep`` seconds an epoch), except that epoch ``params.hold_at``
(the top rung's last) waits until the daemon asks the trial to stop: a search of these trials
never ends on its own, so it is still running however slowly a loaded machine runs the test
that watches it. Asked to stop (pause, cancel, shutdown), the held epoch finishes as any epoch
in progress does.
"""

from __future__ import annotations

import time
from typing import Any

from examples.synthetic.train import loss
from hpd.trial import TrialContext

HOLD_CAP_S = 600.0  # a trial the daemon forgot ends eventually (its parent's death kills it)


def held(ctx: TrialContext) -> None:
    state: dict[str, Any] = ctx.restore() or {"history": []}
    lr, mom = float(ctx.params["lr"]), float(ctx.params["momentum"])
    sleep, hold_at = float(ctx.params["sleep"]), int(ctx.params["hold_at"])
    for epoch in ctx.epochs():
        if epoch == hold_at:
            deadline = time.monotonic() + HOLD_CAP_S
            while not ctx.should_stop and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(sleep)
        value = loss(lr, mom, epoch)
        state["history"].append(value)
        ctx.report(epoch, loss=value)
        ctx.checkpoint(state)
