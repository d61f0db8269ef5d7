"""Misbehaving trials for the reliability tests (entrypoints ``tests.reliability.trials:NAME``)."""

from __future__ import annotations

import os
import time

from examples.synthetic.train import loss
from hpd.trial import TrialContext


def nan_trial(ctx: TrialContext) -> None:
    """Reports NaN for the trials whose index is in HPD_TEST_NAN_INDEXES ("all" = every one),
    on every attempt unless HPD_TEST_NAN_ONCE is set (then only the first attempt)."""
    which = os.environ.get("HPD_TEST_NAN_INDEXES", "all")
    lr, mom = float(ctx.params["lr"]), float(ctx.params["momentum"])
    bad = which == "all" or str(ctx.params.get("k")) in which.split(",")
    if bad and os.environ.get("HPD_TEST_NAN_ONCE"):
        marker = ctx.checkpoint_dir.parent / "nan-fired"
        if marker.exists():
            bad = False
        else:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("1")
    for epoch in ctx.epochs():
        ctx.report(epoch, loss=float("nan") if bad else loss(lr, mom, epoch))


def always_crash(ctx: TrialContext) -> None:
    for epoch in ctx.epochs():
        if epoch == 1:
            os._exit(5)
        ctx.report(epoch, loss=1.0)


def slow(ctx: TrialContext) -> None:
    for epoch in ctx.epochs():
        time.sleep(float(os.environ.get("HPD_TEST_SLEEP", "0.5")))
        ctx.report(epoch, loss=1.0 / epoch)


def rung_checkpoint(ctx: TrialContext) -> None:
    """Reports every epoch, flushes, then checkpoints once per segment: its reports commit on
    their own (``flush()``), not with the checkpoint, so the 'reports' write path runs."""
    state = ctx.restore() or {"epochs": 0}
    lr, mom = float(ctx.params["lr"]), float(ctx.params["momentum"])
    for epoch in ctx.epochs():
        if state["epochs"] != epoch - 1:
            raise RuntimeError(f"resumed at epoch {epoch} after {state['epochs']} epochs")
        state["epochs"] = epoch
        ctx.report(epoch, loss=loss(lr, mom, epoch))
    ctx.flush()
    ctx.checkpoint(state)


def growing_state(ctx: TrialContext) -> None:
    """Checkpoints every epoch; the state outgrows the inline limit at epoch 3 only, so a trial
    goes database -> directory -> database, and checks each resume saw every epoch before it."""
    from hpd.trial import INLINE_MAX

    state = ctx.restore() or {"epochs": 0}
    lr, mom = float(ctx.params["lr"]), float(ctx.params["momentum"])
    for epoch in ctx.epochs():
        if state["epochs"] != epoch - 1:
            raise RuntimeError(f"resumed at epoch {epoch} after {state['epochs']} epochs")
        time.sleep(0.02)
        state = {"epochs": epoch, "pad": b"x" * (INLINE_MAX + 1 if epoch == 3 else 10)}
        ctx.report(epoch, loss=loss(lr, mom, epoch))
        ctx.checkpoint(state)


def gated(ctx: TrialContext) -> None:
    """Like ``slow``, but each epoch waits for the file HPD_TEST_GATE to exist (at most 120 s):
    the segment stays running, with no report made, for as long as the test needs it to."""
    gate = os.environ["HPD_TEST_GATE"]
    deadline = time.monotonic() + 120
    for epoch in ctx.epochs():
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        ctx.report(epoch, loss=1.0 / epoch)
