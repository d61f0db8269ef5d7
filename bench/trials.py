"""Trial functions for the benchmarks (zero cost unless they sleep)."""

from __future__ import annotations

import time

from examples.synthetic.train import loss
from hpd.trial import TrialContext, context


def zero_cost(ctx: TrialContext) -> None:
    """Reports the synthetic curve every epoch; checkpoints only at the rung (as real code would)."""
    lr, mom = float(ctx.params["lr"]), float(ctx.params["momentum"])
    sleep = float(ctx.params.get("sleep", 0.0))
    for epoch in ctx.epochs():
        if sleep:
            time.sleep(sleep)
        ctx.report(epoch, loss=loss(lr, mom, epoch))
    ctx.checkpoint({"epoch": ctx.resource})


def report_only(ctx: TrialContext) -> None:
    """As many reports as epochs, nothing else: the daemon's persistence path alone."""
    for epoch in ctx.epochs():
        ctx.report(epoch, loss=1.0 / epoch)


if __name__ == "__main__":
    zero_cost(context())
