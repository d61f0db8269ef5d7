"""Misbehaving trials: retries, restart budgets, hangs, stale attempts, NaN results (R10-R12)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from hpd.core import protocol
from hpd.trial import INLINE_MAX
from tests.reliability.conftest import base_spec
from tests.waits import WAIT_S, wait_until


def _events(exp: Any, type_: str) -> list[dict[str, Any]]:
    return [e for e in exp.events() if e["type"] == type_]


def test_crash_is_retried_with_backoff_then_completes(make_daemon: Any) -> None:
    d = make_daemon(cpu_slots=2, extra_env={"HPD_TEST_CRASH_AT": "2"})
    d.start()
    spec = base_spec(limits={"max_restarts": 1})
    exp = d.client().submit(spec)
    st = exp.wait(timeout=WAIT_S)
    assert st["state"] == "completed"
    trials = exp.trials()
    assert all(t["state"] in ("completed", "stopped") for t in trials), trials
    promoted = [t for t in trials if len(t["results"]) > 1]
    assert promoted, "some trial must reach epoch 2"
    for t in promoted:  # each crashed exactly once at epoch 2, then resumed and finished
        assert t["restarts"] == 1, t
        assert t["attempts"] >= 3, t
    failed = _events(exp, "segment_failed")
    assert len(failed) == len(promoted)
    assert all(e["retry_in_s"] and e["retry_in_s"] >= 0.25 for e in failed)
    assert all("exit code 3" in e["reason"] or "worker died" in e["reason"] for e in failed)
    assert not _events(exp, "trial_failed")


def test_max_restarts_exceeded_fails_the_trial(make_daemon: Any) -> None:
    d = make_daemon(cpu_slots=2)
    d.start()
    spec = base_spec(
        entrypoint="tests.reliability.trials:always_crash",
        searcher={"max_trials": 2},
        limits={"max_restarts": 2},
    )
    exp = d.client().submit(spec)
    st = exp.wait(timeout=WAIT_S)
    assert st["state"] == "failed"  # nothing ever produced a result
    trials = exp.trials()
    assert [t["state"] for t in trials] == ["failed", "failed"]
    for t in trials:
        assert t["restarts"] == 3 and t["attempts"] == 3, t
        assert t["results"] == {}
    tf = _events(exp, "trial_failed")
    assert len(tf) == 2 and all(e["restarts"] == 3 for e in tf)


def test_progress_timeout_kills_and_retries(make_daemon: Any) -> None:
    d = make_daemon(cpu_slots=1, extra_env={"HPD_TEST_HANG_AT": "2"})
    d.start()
    spec = base_spec(
        searcher={"max_trials": 1, "max_resource": 3, "min_resource": 3},
        limits={"max_restarts": 2, "progress_timeout_s": 1.5},
    )
    exp = d.client().submit(spec)
    st = exp.wait(timeout=WAIT_S)
    assert st["state"] == "completed", st
    (t,) = exp.trials()
    assert t["restarts"] == 1 and t["state"] == "completed"
    (ev,) = _events(exp, "segment_failed")
    assert "no progress for 1.5 s" in ev["reason"]
    # The hung segment was killed 1.5 s after its last progress, not at some later limit:
    # timed by the daemon's own event clock, from the segment's start to its failure (its
    # trial's start-up and first epoch included), so neither the client's waits nor the
    # retry's run, both slow on a loaded machine, count.
    first = _events(exp, "segment_started")[0]
    assert 1.5 <= ev["time"] - first["time"] < 15


def _raw_call(path: str, op: str, **args: Any) -> protocol.Response:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(protocol.encode_request(protocol.Request(op, args, 1)))
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return protocol.decode_response(buf)


def test_stale_attempt_report_is_refused_and_not_recorded(make_daemon: Any, tmp_path: Any) -> None:
    # The segment waits at its first epoch until the gate exists, so it is still running
    # (the refusals below need it to be) however long the checks take.
    gate = tmp_path / "gate"
    d = make_daemon(cpu_slots=1, extra_env={"HPD_TEST_GATE": str(gate)})
    d.start()
    spec = base_spec(
        entrypoint="tests.reliability.trials:gated",
        searcher={"max_trials": 1, "max_resource": 3, "min_resource": 3},
    )
    c = d.client()
    exp = c.submit(spec)
    started = wait_until(lambda: _events(exp, "segment_started"), what="a segment started")
    attempt = started[0]["attempt"]
    trial = started[0]["trial"]
    sock = str(d.socket)
    # a zombie of an older attempt, and a report for a trial that is not running
    stale = _raw_call(sock, "report", trial=trial, attempt=attempt - 1 if attempt > 1 else 999,
                      epoch=1, metrics={"loss": -123.0})
    assert not stale.ok and "stale attempt" in stale.error_message
    other = _raw_call(sock, "report", trial=trial + 50, attempt=attempt, epoch=1,
                      metrics={"loss": -123.0})
    assert not other.ok and "stale attempt" in other.error_message
    # a report beyond the segment's rung (not promoted there) is refused too
    beyond = _raw_call(sock, "report", trial=trial, attempt=attempt, epoch=4,
                       metrics={"loss": -5.0})
    assert not beyond.ok and "not promoted" in beyond.error_message
    ck = _raw_call(sock, "checkpoint", trial=trial, attempt=attempt, epoch=1,
                   name="../../../etc")
    assert not ck.ok
    # inline states: only base64 text, within the limit, of an epoch of the segment, and
    # either a directory or an inline state, not both
    bad_inline = [
        ({"epoch": 1, "data": "not base64!"}, "data"),
        ({"epoch": 1, "data": 123}, "data"),
        ({"epoch": 1, "data": "A" * (INLINE_MAX * 2)}, "data"),
        ({"epoch": 4, "data": "AAAA"}, "outside this segment"),
        ({"epoch": 1, "data": "AAAA", "name": f"ckpt-1-a{attempt}"}, "exactly one"),
        ({"epoch": 1}, "exactly one"),
    ]
    for args, why in bad_inline:
        r = _raw_call(sock, "checkpoint", trial=trial, attempt=attempt, **args)
        assert not r.ok and why in r.error_message, (args, r)
    assert exp.status()["trials"] == {"running": 1}  # all of it refused while it ran
    gate.touch()
    st = exp.wait(timeout=WAIT_S)
    assert st["state"] == "completed"
    d.stop()
    values = [r[0] for r in d.sql("SELECT data FROM metrics")]
    assert values and not any("-123" in v or "-5.0" in v for v in values)
    assert d.sql("SELECT value FROM results") == [(1.0 / 3,)]
    assert d.sql("SELECT COUNT(*) FROM inline_checkpoints") == [(0,)]
    assert d.sql("SELECT ckpt_path FROM trials") == [(None,)]


def test_nan_stop_is_recorded_and_never_promoted(make_daemon: Any) -> None:
    d = make_daemon(cpu_slots=2, extra_env={"HPD_TEST_NAN_INDEXES": "0"})
    d.start()
    spec = base_spec(
        entrypoint="tests.reliability.trials:nan_trial",
        space={"k": {"type": "choice", "values": [0, 1, 2]}},
        searcher={"on_nan": "stop", "max_trials": 9},
    )
    exp = d.client().submit(spec)
    st = exp.wait(timeout=WAIT_S)
    assert st["state"] == "completed"
    trials = exp.trials()
    nan_trials = [t for t in trials if t["params"]["k"] == 0]
    assert nan_trials, "the seeded sample must hold some k=0 trials"
    for t in nan_trials:
        assert t["results"] == {"0": "nan"}, t  # recorded, only at rung 0: never promoted
        assert t["state"] == "stopped" and "nan" in (t["error"] or "")
    promoted = {e["trial"] for e in _events(exp, "promoted")}
    assert not promoted & {t["id"] for t in nan_trials}
    d.stop()
    kinds = d.sql("SELECT kind, value FROM results WHERE kind != 'finite'")
    assert kinds and all(k == ("nan", None) for k in kinds)
    assert len(kinds) == len(nan_trials)


def test_nan_retry_retries_the_segment(make_daemon: Any) -> None:
    d = make_daemon(cpu_slots=2, extra_env={"HPD_TEST_NAN_INDEXES": "all", "HPD_TEST_NAN_ONCE": "1"})
    d.start()
    spec = base_spec(
        entrypoint="tests.reliability.trials:nan_trial",
        searcher={"on_nan": "retry", "max_trials": 3, "max_resource": 3},
    )
    exp = d.client().submit(spec)
    st = exp.wait(timeout=WAIT_S)
    assert st["state"] == "completed"
    for t in exp.trials():
        assert t["restarts"] == 1, t
        assert "nan" not in t["results"].values(), t
    fails = _events(exp, "segment_failed")
    assert len(fails) == 3 and all("on_nan = retry" in e["reason"] for e in fails)


@pytest.mark.parametrize("value", ["abc", None, [1], {"x": 1}])
def test_non_numeric_metric_is_refused(make_daemon: Any, tmp_path: Any, value: Any) -> None:
    gate = tmp_path / "gate"  # the segment runs until the gate exists, as in the test above
    d = make_daemon(cpu_slots=1, extra_env={"HPD_TEST_GATE": str(gate)})
    d.start()
    spec = base_spec(
        entrypoint="tests.reliability.trials:gated",
        searcher={"max_trials": 1, "max_resource": 3, "min_resource": 3},
    )
    exp = d.client().submit(spec)
    started = wait_until(lambda: _events(exp, "segment_started"), what="a segment started")
    r = _raw_call(str(d.socket), "report", trial=started[0]["trial"],
                  attempt=started[0]["attempt"], epoch=1, metrics={"loss": value})
    # refused for its value (the segment is still running: not as a stale attempt)
    assert not r.ok and "metrics: not a number" in r.error_message, r
    assert d.client().ping()
    gate.touch()
    assert exp.wait(timeout=WAIT_S)["state"] == "completed"
