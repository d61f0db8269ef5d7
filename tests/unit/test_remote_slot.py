"""The slot actor's side of the Ray backend (``hpd.trial.remote``) without Ray: its ``run``
generator is driven here as Ray drives it, and the daemon's replies are played by the test.
Also the slot table's changes when nodes join and leave (``SlotTable.add``/``retire``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpd.io import gpus
from hpd.trial.remote import SlotActor
from tests.conftest import REPO


def _segment(tmp_path: Path, *, resource: int = 3, sleep: float = 0.0) -> dict[str, Any]:
    return {
        "experiment": 1,
        "trial": 7,
        "index": 0,
        "attempt": 11,
        "params": {"lr": 0.01, "momentum": 0.7, "sleep": sleep},
        "rung": 1,
        "resource": resource,
        "metric": "loss",
        "mode": "min",
        "seed": 0,
        "checkpoint": None,
        "checkpoint_data": None,
        "checkpoint_epoch": 0,
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "inline_max": 65536,
        "subset": {},
        "log": str(tmp_path / "trials" / "7.log"),
        "workdir": str(REPO),
        "entrypoint": "examples.synthetic.train:train",
        "env": {},
        "header": "[hpd] attempt 11: slot gpu0:0, CUDA_VISIBLE_DEVICES=ray-abc-0\n",
    }


def _drive(actor: SlotActor, run_id: int, segment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """What the daemon does: answer every request (acknowledging it), yield each message."""
    for msg in actor.run(run_id, segment):
        yield msg
        if "op" in msg:
            actor.reply(run_id, msg["id"], True, {"ok": True}, "", "")


def test_an_entrypoint_segment_sends_its_reports_then_its_answer(tmp_path: Path) -> None:
    actor = SlotActor({"CUDA_VISIBLE_DEVICES": "3"}, "f" * 56)
    messages = list(_drive(actor, 1, _segment(tmp_path)))
    *requests, last = messages
    assert all("op" in m for m in requests)
    assert "answer" in last and last["answer"]["status"] == "ok"
    epochs = [r["epoch"] for m in requests for r in m["args"].get("reports", [])]
    epochs += [r["epoch"] for r in last["answer"].get("reports", [])]
    assert sorted(epochs) == [1, 2, 3]
    log = (tmp_path / "trials" / "7.log").read_text()
    # the log says where the segment really ran: the actor's GPU, not the lease's name
    assert "node ffffffff, CUDA_VISIBLE_DEVICES=3" in log and "ray-abc" not in log


def test_the_trials_own_error_is_an_error_message_and_the_actor_stays(tmp_path: Path) -> None:
    actor = SlotActor({}, "n" * 56)
    bad = _segment(tmp_path)
    bad["entrypoint"] = "examples.synthetic.train:no_such_function"
    *_, last = _drive(actor, 1, bad)
    assert "AttributeError" in last["error"]
    *_, last = _drive(actor, 2, _segment(tmp_path))
    assert last["answer"]["status"] == "ok"


def test_a_refused_request_reaches_the_trial_as_an_error(tmp_path: Path) -> None:
    actor = SlotActor({}, "n" * 56)
    gen = actor.run(1, _segment(tmp_path))
    for msg in gen:
        if "op" in msg:  # the daemon refuses it (a stale attempt, say)
            actor.reply(1, msg["id"], False, None, "HpdError", "attempt 11 is not current")
            continue
        assert "attempt 11 is not current" in msg["error"]
        break


def test_replies_go_to_their_own_run_even_when_runs_overlap(tmp_path: Path) -> None:
    """Ray may close a finished run's generator after the next run has begun: a reply for
    the new run must still reach it (it once went nowhere and the segment hung)."""
    actor = SlotActor({}, "n" * 56)
    first = actor.run(1, _segment(tmp_path))
    for msg in first:
        if "op" in msg:
            actor.reply(1, msg["id"], True, {}, "", "")
        else:
            break  # the answer: the generator is not exhausted, its finally has not run
    second = actor.run(2, _segment(tmp_path))
    request = next(second)
    assert "op" in request
    first.close()  # the first run's clean-up, while the second waits for its reply
    actor.reply(2, request["id"], True, {}, "", "")
    ended = threading.Event()

    def finish() -> None:
        for msg in second:
            if "op" in msg:
                actor.reply(2, msg["id"], True, {}, "", "")
        ended.set()

    threading.Thread(target=finish, daemon=True).start()
    assert ended.wait(60), "the second segment never got its reply"


def test_interrupt_ends_the_segment_after_its_epoch(tmp_path: Path) -> None:
    actor = SlotActor({}, "n" * 56)
    seg = _segment(tmp_path, resource=1000, sleep=0.01)
    stopped = threading.Timer(0.3, actor.interrupt)
    stopped.start()
    *_, last = _drive(actor, 1, seg)
    assert last["answer"]["status"] == "interrupted"


def test_a_command_segment_talks_through_the_relay(tmp_path: Path) -> None:
    actor = SlotActor({}, "n" * 56)
    seg = _segment(tmp_path)
    inner = {k: seg[k] for k in seg if k not in ("log", "workdir", "entrypoint", "env", "header")}
    inner["inline_max"] = 0
    command = {
        "command": [sys.executable, "-m", "examples.synthetic.train"],
        "process_env": {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        "segment": inner,
        "log": seg["log"],
        "workdir": str(REPO),
        "header": seg["header"],
    }
    messages = list(_drive(actor, 1, command))
    assert messages[-1] == {"answer": {}}, messages[-1]
    ops = [m["op"] for m in messages[:-1]]
    assert "report" in ops or "checkpoint" in ops


def _slot(uuid: str, i: int = 0) -> gpus.Slot:
    return gpus.Slot(gpus.GpuInfo(i, uuid, uuid, 0, 0, None), 0)


def test_slots_of_a_node_that_left_are_never_leased_again() -> None:
    table = gpus.SlotTable.build([], slots_per_gpu=1, cpu_slots=0)
    a, b = _slot("a", 0), _slot("b", 1)
    table.add([a, b])
    lease = table.acquire(1)
    assert lease is not None and lease.slots == (a,)
    table.retire([a])  # its node left while the segment ran
    table.release(lease)
    assert table.free == {b} and table.gpu_slots == [b]
    table.add([a])  # the node came back
    assert a in table.free


def test_a_multi_gpu_lease_takes_its_gpus_on_one_machine() -> None:
    """On a cluster a process cannot span two nodes: with one free GPU on node a and two on
    node b, a 2-GPU lease takes b's two, and a third request finds nothing."""

    def on(node: str, i: int) -> gpus.Slot:
        return gpus.Slot(gpus.GpuInfo(i, f"{node}{i}", "", 0, 0, None, node), 0)

    table = gpus.SlotTable.build([], slots_per_gpu=1, cpu_slots=0)
    table.add([on("a", 0), on("b", 1), on("b", 2)])
    lease = table.acquire(2)
    assert lease is not None and {g.machine for g in lease.gpus} == {"b"}
    assert table.acquire(2) is None
    assert table.acquire(1) is not None  # a's GPU still serves a one-GPU trial


def test_a_gpu_of_unknown_memory_is_not_held_to_min_free_memory() -> None:
    """Remote GPUs are not sampled (total 0): min_free_memory_mb cannot refuse them forever."""
    table = gpus.SlotTable.build([], slots_per_gpu=1, cpu_slots=0)
    table.add([_slot("remote")])
    assert table.acquire(1, min_free_memory_mb=1000) is not None
