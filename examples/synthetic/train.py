"""A deterministic synthetic learning curve: the trial the tests and benchmarks use.

The curve is the one in the peers' benchmarks (reference/anchors-perf.md), so hpd and the peers
see the same workload: a loss that falls with the epochs towards a floor set by lr and momentum.
Works as an ``entrypoint`` (``examples.synthetic.train:train``) and as a ``command``
(``python -m examples.synthetic.train``). ``params.sleep`` (seconds per epoch) simulates GPU work.
Environment knobs for the reliability tests: ``HPD_TEST_CRASH_AT`` (exit 3 at that epoch on the
first attempt), ``HPD_TEST_HANG_AT`` (sleep forever at that epoch).
"""

from __future__ import annotations

import math
import os
import random
import time
from typing import Any

from hpd.trial import TrialContext, context


def loss(lr: float, momentum: float, epoch: int) -> float:
    a = (math.log10(lr) + 2) / 2
    final = 0.05 + 0.4 * a * a + 0.8 * (momentum - 0.7) ** 2
    tau = 3 - a
    noise = random.Random(f"{lr!r}:{momentum!r}:{epoch}").uniform(-0.005, 0.005)
    return final + (1 - final) * math.exp(-epoch / tau) + noise


def train(ctx: TrialContext) -> None:
    state: dict[str, Any] = ctx.restore() or {"history": []}
    lr, mom = float(ctx.params["lr"]), float(ctx.params["momentum"])
    sleep = float(ctx.params.get("sleep", 0.0))
    for epoch in ctx.epochs():
        # Resume must be exact: the checkpoint holds one entry per epoch already trained.
        if len(state["history"]) != epoch - 1:
            raise RuntimeError(f"resumed at epoch {epoch} with {len(state['history'])} epochs")
        _test_faults(ctx, epoch)
        if sleep:
            time.sleep(sleep)
        value = loss(lr, mom, epoch)
        state["history"].append(value)
        ctx.report(epoch, loss=value)
        ctx.checkpoint(state)


def _test_faults(ctx: TrialContext, epoch: int) -> None:
    crash = os.environ.get("HPD_TEST_CRASH_AT")
    if crash and int(crash) == epoch and not _crashed_before(ctx):
        os._exit(3)
    hang = os.environ.get("HPD_TEST_HANG_AT")
    if hang and int(hang) == epoch and not _crashed_before(ctx):
        time.sleep(3600)


def _crashed_before(ctx: TrialContext) -> bool:
    # Marker file in the trial's own checkpoint dir: the fault fires once per trial.
    marker = ctx.checkpoint_dir.parent / "fault-fired"
    if marker.exists():
        return True
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("1")
    return False


if __name__ == "__main__":
    train(context())
