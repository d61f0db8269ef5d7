"""The trial side of checkpoints: new directories, registration, restore and pruning.

A fake channel stands in for the daemon, so these run without one; the daemon's side (which
names it accepts, what it commits) is covered by the reliability and integration suites.
"""

from __future__ import annotations

import base64
import pickle
from pathlib import Path
from typing import Any

import pytest

from hpd.errors import RemoteError
from hpd.trial import CHECKPOINT_NAME, INLINE_MAX, TrialContext


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
    tmp_path: Path,
    channel: FakeChannel,
    *,
    attempt: int = 7,
    checkpoint: str | None = None,
    data: str | None = None,
    inline_max: int = 0,
    end_with_answer: bool = False,
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
        "checkpoint_data": data,
        "checkpoint_epoch": 1 if checkpoint or data else 0,
        "checkpoint_dir": str(tmp_path / "trial" / "checkpoints"),
        "inline_max": inline_max,
    }
    return TrialContext(seg, channel, end_with_answer=end_with_answer)  # type: ignore[arg-type]


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


# -- inline checkpoints: small states kept in the daemon's database ------------------------


def test_a_small_state_is_registered_inline_without_any_file(tmp_path: Path) -> None:
    ch = FakeChannel()
    ctx = _ctx(tmp_path, ch, inline_max=INLINE_MAX)
    ctx.report(1, loss=1.0)
    assert ctx.checkpoint({"w": [1, 2]}) is None
    [(op, args)] = ch.calls
    assert op == "checkpoint" and args["epoch"] == 1 and "name" not in args
    assert _ctx(tmp_path, FakeChannel(), data=args["data"]).restore() == {"w": [1, 2]}
    assert [r["epoch"] for r in args["reports"]] == [1]
    assert not (tmp_path / "trial").exists()
    assert ctx.restore() == {"w": [1, 2]}  # the latest, within the segment too
    resumed = _ctx(tmp_path, FakeChannel(), attempt=8, data=args["data"])
    assert resumed.restore() == {"w": [1, 2]} and resumed.start_epoch == 1


def test_a_state_over_the_limit_gets_a_directory(tmp_path: Path) -> None:
    ch = FakeChannel()
    ctx = _ctx(tmp_path, ch, inline_max=5000)  # torch.save's zip costs about 1 KB
    ctx.report(1, loss=1.0)
    path = ctx.checkpoint(b"x" * 10_000)
    assert path is not None and path.name == "ckpt-1-a7"
    assert ch.calls[0][1]["name"] == "ckpt-1-a7" and "data" not in ch.calls[0][1]
    assert ctx.restore() == b"x" * 10_000
    assert ctx.checkpoint(b"small") is None  # inline again: the directory is garbage now
    assert ctx.restore() == b"small"
    ctx.cleanup()
    assert _dirs(tmp_path) == []


def test_the_daemon_bounds_what_may_be_inline(tmp_path: Path) -> None:
    """Without ``inline_max`` (a command's segment) every checkpoint is a directory, and a
    segment cannot raise the limit above INLINE_MAX."""
    ctx = _ctx(tmp_path, FakeChannel(), inline_max=10 * INLINE_MAX)
    ctx.report(1, loss=1.0)
    assert ctx.checkpoint(b"x" * (INLINE_MAX + 1)) is not None
    plain = _ctx(tmp_path, FakeChannel(), attempt=9)
    plain.report(1, loss=1.0)
    assert plain.checkpoint(b"x") is not None


def test_the_last_epochs_inline_checkpoint_rides_with_the_answer(tmp_path: Path) -> None:
    ch = FakeChannel()
    ctx = _ctx(tmp_path, ch, inline_max=INLINE_MAX, end_with_answer=True)
    for epoch in ctx.epochs():
        ctx.report(epoch, loss=1.0 / epoch)
        ctx.checkpoint({"epoch": epoch})
    # epochs 1 and 2 are registered at once (a crash must not lose them); epoch 3 waits
    assert [args["epoch"] for _, args in ch.calls] == [1, 2]
    end = ctx.end()
    assert [r["epoch"] for r in end["reports"]] == [3]
    assert end["checkpoint"]["epoch"] == 3
    assert _ctx(tmp_path, FakeChannel(), data=end["checkpoint"]["data"]).restore() == {"epoch": 3}
    assert ctx.end() == {}  # given away once


def test_a_flush_sends_a_waiting_checkpoint_with_the_reports(tmp_path: Path) -> None:
    ch = FakeChannel()
    ctx = _ctx(tmp_path, ch, inline_max=INLINE_MAX, end_with_answer=True)
    for epoch in ctx.epochs():
        ctx.report(epoch, loss=1.0)
    ctx.checkpoint("final")
    assert ch.calls == []
    ctx.flush()  # e.g. a timing report, or an error after the checkpoint
    [(op, args)] = ch.calls
    assert op == "checkpoint" and args["epoch"] == 3 and len(args["reports"]) == 3
    assert ctx.end() == {}


def test_a_checkpoint_replacing_a_directory_never_waits(tmp_path: Path) -> None:
    """The directory it replaces is deleted after the answer; its replacement must be durable
    by then, so it is registered at once."""
    old = tmp_path / "trial" / "checkpoints" / "ckpt-1-a6"
    old.mkdir(parents=True)
    (old / "state").write_bytes(pickle.dumps("old"))
    ch = FakeChannel()
    ctx = _ctx(tmp_path, ch, checkpoint=str(old), inline_max=INLINE_MAX, end_with_answer=True)
    for epoch in ctx.epochs():
        ctx.report(epoch, loss=1.0)
    assert ctx.checkpoint("new") is None
    assert [op for op, _ in ch.calls] == ["checkpoint"] and ctx.end() == {}
    ctx.cleanup()
    assert _dirs(tmp_path) == []


def test_torch_objects_round_trip_inline(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ch = FakeChannel()
    ctx = _ctx(tmp_path, ch, inline_max=INLINE_MAX)
    ctx.report(1, loss=1.0)
    assert ctx.checkpoint({"w": torch.arange(4.0)}) is None
    data = ch.calls[0][1]["data"]
    assert base64.b64decode(data)[:4] == b"PK\x03\x04"
    got = _ctx(tmp_path, FakeChannel(), data=data).restore()
    assert torch.equal(got["w"], torch.arange(4.0))
