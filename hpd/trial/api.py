"""The in-trial API: what a training function or program sees of hpd.

Owns ``TrialContext`` (params, epochs of this segment, report, checkpoint/restore, subset
loaders) and the blocking channel to the daemon. The same object serves both trial kinds: an
``entrypoint`` function gets it as its argument (inside a warm worker); a ``command`` program
calls ``hpd.trial.context()``, which reads the ``HPD_*`` environment. Must stay importable
without torch (torch is used only if the trial itself imported it) and never import asyncio.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import io
import json
import os
import pickle
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hpd.core import protocol
from hpd.core.protocol import CHECKPOINT_NAME, INLINE_MAX
from hpd.errors import HpdError
from hpd.io.channel import Caller, Channel, unix_connector

# Reports younger than this ride with the next send. Half a second keeps live curves (the UI
# polls every 0.7 s) current while a loop of short epochs costs the daemon two commits a second
# at most instead of one per epoch; every rung result still rides with its checkpoint.
BATCH_S = 0.5
BATCH_MAX = 512


class TrialContext:
    """One segment of one trial: from its last checkpoint up to this segment's rung resource."""

    def __init__(
        self, segment: Mapping[str, Any], channel: Caller, *, end_with_answer: bool = False
    ) -> None:
        self._seg = dict(segment)
        self._channel = channel
        self.params: dict[str, Any] = dict(segment["params"])
        self.trial_id: int = int(segment["trial"])
        self.experiment_id: int = int(segment["experiment"])
        self.attempt: int = int(segment["attempt"])
        self.rung: int = int(segment["rung"])
        self.resource: int = int(segment["resource"])
        self.metric: str = str(segment["metric"])
        self.seed: int = int(segment.get("seed", 0))
        self.checkpoint_dir = Path(segment["checkpoint_dir"])
        self.subset: dict[str, Any] = dict(segment.get("subset") or {})
        self._restored_epoch = int(segment.get("checkpoint_epoch") or 0)
        self._pending: list[dict[str, Any]] = []
        # The segment's start counts as a send: a first epoch shorter than BATCH_S rides with
        # its checkpoint instead of costing a round trip and a commit of its own.
        self._last_send = time.monotonic()
        self._epoch = self._restored_epoch
        self._stop = False
        self._garbage: list[str] = []  # replaced checkpoints, deleted later (``cleanup``)
        self._inline_max = min(INLINE_MAX, int(segment.get("inline_max") or 0))
        # A warm worker's segment answers the daemon when it returns: the last epoch's reports
        # and an inline checkpoint of it can ride with that answer instead of a round trip and
        # a commit of their own (see ``checkpoint``).
        self._end_with_answer = end_with_answer
        self._final: dict[str, Any] | None = None  # a registration waiting for the answer

    # -- the segment's epochs --------------------------------------------------------------

    @property
    def start_epoch(self) -> int:
        """The last epoch the restored checkpoint covers (0 on the first segment)."""
        return self._restored_epoch

    def epochs(self) -> Iterator[int]:
        """1-based epochs from the restored epoch + 1 up to this segment's rung resource.

        Stops early (after the epoch in progress) when the daemon asks the trial to stop.
        """
        # No flush here: reports still pending when the loop ends ride with a checkpoint taken
        # after it, else with the end of the segment (the warm worker flushes when the function
        # returns, a command at exit), which is before the daemon looks for the rung result.
        for epoch in range(self._restored_epoch + 1, self.resource + 1):
            if self._stop:
                return
            self._epoch = epoch
            yield epoch

    def request_stop(self) -> None:
        """Called from a SIGTERM handler: finish the epoch in progress, then return."""
        self._stop = True

    @property
    def should_stop(self) -> bool:
        return self._stop

    @property
    def stopped_early(self) -> bool:
        return self._stop and self._epoch < self.resource

    # -- reporting ------------------------------------------------------------------------

    def report(self, epoch: int, **metrics: float) -> None:
        """Record this epoch's metrics; the spec's metric at the rung's epoch is the rung result."""
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError(f"epoch must be an int, got {epoch!r}")
        if not 1 <= epoch <= self.resource:
            raise ValueError(f"epoch must be in 1..{self.resource} for this segment, got {epoch}")
        if not metrics:
            raise ValueError("report() needs at least one metric")
        encoded = {}
        for name, value in metrics.items():
            if name.startswith("hpd_"):
                raise ValueError(f"metric names starting with 'hpd_' are reserved, got {name!r}")
            encoded[name] = _encode_metric(name, value)
        self._epoch = max(self._epoch, epoch)
        self._pending.append({"epoch": epoch, "metrics": encoded})
        # Batching: a report within BATCH_S of the last send waits for the next one (or for
        # checkpoint/flush/the end of the segment), so fast loops cost one fsync per batch,
        # while an epoch slower than BATCH_S is sent, and made durable, at once.
        if time.monotonic() - self._last_send >= BATCH_S or len(self._pending) >= BATCH_MAX:
            self.flush()

    def flush(self) -> None:
        """Send every pending report (and a checkpoint waiting for the segment's answer);
        returns once the daemon has made them durable."""
        if self._final is not None:
            final, self._final = self._final, None
            self._register(final)
            return
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        reply = self._channel.call(
            "report", trial=self.trial_id, attempt=self.attempt, reports=batch
        )
        self._last_send = time.monotonic()
        if isinstance(reply, dict) and reply.get("stop"):
            self._stop = True

    def end(self) -> dict[str, Any]:
        """What rides with a warm worker's answer: pending reports and a final checkpoint."""
        out: dict[str, Any] = {}
        if self._pending:
            out["reports"], self._pending = self._pending, []
        if self._final is not None:
            out["checkpoint"], self._final = self._final, None
        return out

    def report_timing(self, timing: Mapping[str, Any]) -> None:
        """Subset loaders' timings (selection seconds, epoch seconds, fraction) for the UI."""
        self.flush()
        self._channel.call("timing", trial=self.trial_id, attempt=self.attempt, timing=dict(timing))

    # -- checkpoints ----------------------------------------------------------------------

    def checkpoint(self, obj: Any, *, epoch: int | None = None) -> Path | None:
        """Save ``obj`` as the trial's latest checkpoint; returns its directory, or None when
        the state is small enough (``INLINE_MAX``) to be kept in the daemon's database.

        Only a registered checkpoint is ever resumed from, and the daemon registers one only
        once it is durable: a directory fully written and fsynced (its name is new, so no
        rename is needed; the one it replaces is deleted later), or an inline state committed
        in the same transaction as its registration. In a warm worker, an inline checkpoint of
        the segment's last epoch rides with the segment's answer: committed with the result,
        before any decision that uses it.
        """
        epoch = self._epoch if epoch is None else int(epoch)
        if epoch < 1:
            raise ValueError("checkpoint() before the first epoch; call it after report()")
        data = _dumps(obj)
        previous = self._seg.get("checkpoint")
        if len(data) <= self._inline_max:
            text = base64.b64encode(data).decode("ascii")
            reg: dict[str, Any] = {"epoch": epoch, "data": text}
            path = None
            # Deferred only if nothing is deleted because of it: a replaced directory may be
            # deleted only once the registration replacing it is durable.
            if self._end_with_answer and epoch >= self.resource and not previous:
                self._final = reg
            else:
                self._register(reg)
            self._seg.update(checkpoint=None, checkpoint_data=text)
        else:
            path = self._new_checkpoint_dir(epoch)
            _write(data, path / "state")
            _fsync_dir(path)  # the file's entry in its directory
            _fsync_dir(self.checkpoint_dir)  # the directory's entry in the trial's
            self._register({"epoch": epoch, "name": path.name})
            self._seg.update(checkpoint=str(path), checkpoint_data=None)
        self._replaced(previous, path)
        return path

    def _register(self, reg: dict[str, Any]) -> None:
        """Register a checkpoint; the pending reports travel with it, in one transaction."""
        self._final = None  # a newer checkpoint supersedes one waiting for the answer
        batch, self._pending = self._pending, []
        self._channel.call(
            "checkpoint", trial=self.trial_id, attempt=self.attempt, reports=batch, **reg
        )
        self._last_send = time.monotonic()

    def _new_checkpoint_dir(self, epoch: int) -> Path:
        """``ckpt-EPOCH-aATTEMPT``, or ``...-N`` when this attempt checkpoints an epoch again."""
        base = f"ckpt-{epoch}-a{self.attempt}"
        for n in range(1, 10_000):
            path = self.checkpoint_dir / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()
                return path
            except FileNotFoundError:  # the trial's first checkpoint
                self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
                path.mkdir()
                return path
            except FileExistsError:
                continue
        raise HpdError(f"too many checkpoints of epoch {epoch} in attempt {self.attempt}")

    def restore(self) -> Any | None:
        """The object of the last registered checkpoint, or None on the first segment."""
        text = self._seg.get("checkpoint_data")
        if text:
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise HpdError("the segment's inline checkpoint is not valid base64") from None
            return _load(io.BytesIO(data))
        path = self._seg.get("checkpoint")
        if not path:
            return None
        with open(Path(path) / "state", "rb") as f:
            return _load(f)

    def _replaced(self, previous: str | None, current: Path | None) -> None:
        """The checkpoint ``current`` replaces is garbage now; delete older garbage.

        Deleting is kept off the end of the segment: the last replaced checkpoint goes in
        ``cleanup()``, after the warm worker has answered the daemon. At most two checkpoints
        of a trial are on disk at once, besides the one being written.
        """
        self._collect()
        if previous and previous != str(current):
            self._garbage.append(previous)

    def _collect(self) -> None:
        garbage, self._garbage = self._garbage, []
        for p in garbage:
            shutil.rmtree(p, ignore_errors=True)

    def cleanup(self) -> None:
        """Delete replaced checkpoints, and what a crashed attempt of this trial left behind."""
        self._collect()
        keep = os.path.basename(self._seg.get("checkpoint") or "")
        try:
            with os.scandir(self.checkpoint_dir) as entries:
                stale = [
                    e.path
                    for e in entries
                    if e.name != keep
                    and (CHECKPOINT_NAME.match(e.name) or e.name.startswith(".tmp-"))
                ]
        except FileNotFoundError:  # the trial never checkpointed
            return
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)

    # -- subsets --------------------------------------------------------------------------

    def subset_loader(self, dataset: Any, **kwargs: Any) -> Any:
        """A ``hpd.subset.SubsetLoader`` configured from the spec's [subset] section.

        Its timings are sent to the daemon after every epoch. Needs torch (``hpd[torch]``).
        """
        from hpd.subset import SubsetLoader

        cfg = {
            "strategy": self.subset.get("strategy", "none"),
            "fraction": self.subset.get("fraction", 1.0),
            "select_every": self.subset.get("select_every", 20),
            "per_batch": self.subset.get("per_batch", False),
            "seed": self.seed,
        }
        cfg.update(kwargs)
        cfg.setdefault("on_timing", self.report_timing)
        return SubsetLoader(dataset, **cfg)


def _encode_metric(name: str, value: object) -> float | str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # numpy and torch scalars convert through float(); anything else is refused clearly.
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise TypeError(f"metric {name!r} must be a number, got {value!r}") from None
    return protocol.encode_number(float(value))


def _dumps(obj: Any) -> bytes | memoryview:
    """torch.save if the trial imported torch (tensors stay tensors), else pickle."""
    torch = sys.modules.get("torch")
    if torch is None:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer()  # no copy of a large state


def _write(data: bytes | memoryview, path: Path) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format; a pickle starts with b"\x80" (protocol >= 2)


def _load(f: Any) -> Any:
    """A state written by ``_dumps``, from a binary file object."""
    if f.read(4) == _ZIP_MAGIC:
        import torch

        f.seek(0)
        return torch.load(f, weights_only=False)
    f.seek(0)
    return pickle.load(f)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_current: TrialContext | None = None


def context() -> TrialContext:
    """The context of a ``command`` trial, from its ``HPD_*`` environment (cached)."""
    global _current
    if _current is not None:
        return _current
    raw = os.environ.get("HPD_SEGMENT")
    sock = os.environ.get("HPD_SOCKET")
    if not raw or not sock:
        raise HpdError("hpd.trial.context() works only inside a trial started by the hpd daemon")
    ctx = TrialContext(json.loads(raw), Channel(unix_connector(sock)))
    atexit.register(ctx.cleanup)  # atexit runs in reverse: the flush first, then this
    atexit.register(ctx.flush)  # a program that reports and exits without a checkpoint
    with contextlib.suppress(ValueError):  # not the main thread: the daemon will SIGKILL
        signal.signal(signal.SIGTERM, lambda *_: ctx.request_stop())
    _current = ctx
    return ctx
