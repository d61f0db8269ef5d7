"""The trial side of checkpoints: new directories, registration, restore and pruning.

A fake channel stands in for the daemon, so these run without one; the daemon's side (which
names it accepts, what it commits) is covered by the reliability and integration suites.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from hpd.errors import RemoteError
from hpd.trial import CHECKPOINT_NAME, TrialContext


class FakeChannel:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    def call(self, op: str, **args: Any) -> Any:
        self.calls.append((op, args))
        if self.fail:
            raise RemoteError("store", "disk full")
        return {}


def _ctx(
    tmp_path: Path, channel: FakeChannel, *, attempt: int = 7, checkpoint: str | None = None
) -> TrialContext:
    seg = {
        "params": {},
        "trial": 3,
        "experiment": 1,
        "attempt": attempt,
        "rung": 0,
        "resource": 3,
        "metric": "loss",
        "checkpoint": checkpoint,
        "checkpoint_epoch": 1 if checkpoint else 0,
        "checkpoint_dir": str(tmp_path / "trial" / "checkpoints"),
    }
    return TrialContext(seg, channel)  # type: ignore[arg-type]


def _dirs(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "trial" / "checkpoints").iterdir())


def test_first_checkpoint_creates_its_dirs_and_registers_with_pending_reports(
    tmp_path: Path,
) -> None:
    ch = FakeChannel()
    ctx = _ctx(tmp_path, ch)
    for epoch in ctx.epochs():
        ctx.report(epoch, loss=1.0 / epoch)
    path = ctx.checkpoint({"w": [1, 2, 3]})
    assert path.name == "ckpt-3-a7" and (path / "state").is_file()
    assert _dirs(tmp_path) == ["ckpt-3-a7"]
    [(op, args)] = ch.calls
    assert op == "checkpoint" and args["name"] == "ckpt-3-a7" and args["epoch"] == 3
    assert [r["epoch"] for r in args["reports"]] == [1, 2, 3]  # they ride with the registration
    resumed = _ctx(tmp_path, FakeChannel(), attempt=8, checkpoint=str(path))
    assert resumed.restore() == {"w": [1, 2, 3]}


def test_same_epoch_twice_gets_a_new_name(tmp_path: Path) -> None:
    ch = FakeChannel()
    ctx = _ctx(tmp_path, ch)
    ctx.report(1, loss=1.0)
    names = [ctx.checkpoint(x).name for x in "abc"]
    assert names == ["ckpt-1-a7", "ckpt-1-a7-2", "ckpt-1-a7-3"]
    assert [args["name"] for _, args in ch.calls] == names
    m = CHECKPOINT_NAME.match(names[-1])
    assert m is not None and m.group(1, 2) == ("1", "7")
    # each checkpoint deletes what the one before it replaced: two are on disk, not three
    assert _dirs(tmp_path) == ["ckpt-1-a7-2", "ckpt-1-a7-3"]
    ctx.cleanup()
    assert _dirs(tmp_path) == ["ckpt-1-a7-3"]
    assert (
        _ctx(
            tmp_path, FakeChannel(), checkpoint=str(tmp_path / "trial" / "checkpoints" / names[-1])
        ).restore()
        == "c"
    )


def test_cleanup_deletes_the_replaced_checkpoint_and_leftovers_only(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeChannel(), attempt=4)
    ctx.report(1, loss=1.0)
    restored = ctx.checkpoint({"epoch": 1})
    cdir = restored.parent
    (cdir / ".tmp-0123").mkdir()  # a writer killed by an older hpd
    (cdir / "ckpt-2-a5").mkdir()  # an attempt that died before registering
    (cdir / "notes.txt").write_text("the user's own file stays")
    ctx2 = _ctx(tmp_path, FakeChannel(), attempt=6, checkpoint=str(restored))
    assert ctx2.restore() == {"epoch": 1}
    for epoch in ctx2.epochs():
        ctx2.report(epoch, loss=1.0)
    new = ctx2.checkpoint({"epoch": 3})
    assert new.name == "ckpt-3-a6" and restored.exists()  # deleted after the segment's answer
    ctx2.cleanup()
    assert _dirs(tmp_path) == ["ckpt-3-a6", "notes.txt"]


def test_cleanup_without_any_checkpoint_is_harmless(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeChannel())
    ctx.cleanup()
    assert not (tmp_path / "trial").exists()


def test_a_refused_registration_keeps_the_registered_checkpoint(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, FakeChannel())
    ctx.report(1, loss=1.0)
    good = ctx.checkpoint("good")
    failing = _ctx(tmp_path, FakeChannel(fail=True), attempt=8, checkpoint=str(good))
    failing.report(2, loss=1.0)
    with pytest.raises(RemoteError):
        failing.checkpoint("unregistered")
    assert (good / "state").is_file()  # still there, still what a resume gets
    assert _ctx(tmp_path, FakeChannel(), checkpoint=str(good)).restore() == "good"


def test_checkpoint_before_any_epoch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="before the first epoch"):
        _ctx(tmp_path, FakeChannel()).checkpoint({})


def test_restore_reads_the_older_layout_with_a_format_file(tmp_path: Path) -> None:
    old = tmp_path / "ckpt-2-a1"
    old.mkdir()
    (old / "state").write_bytes(pickle.dumps({"epoch": 2}))
    (old / "format").write_text("pickle")
    assert _ctx(tmp_path, FakeChannel(), checkpoint=str(old)).restore() == {"epoch": 2}


def test_torch_objects_round_trip_as_tensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ctx = _ctx(tmp_path, FakeChannel())
    ctx.report(1, loss=1.0)
    path = ctx.checkpoint({"w": torch.arange(4.0)})
    assert (path / "state").read_bytes()[:4] == b"PK\x03\x04"
    got = _ctx(tmp_path, FakeChannel(), checkpoint=str(path)).restore()
    assert torch.equal(got["w"], torch.arange(4.0))
