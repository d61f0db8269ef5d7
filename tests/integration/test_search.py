"""End-to-end searches on a real daemon: real socket, real SQLite file, fake GPUs."""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import subprocess
import sys
from collections import defaultdict
from typing import Any

import pytest

from examples.synthetic.train import loss
from hpd.client.local import LocalDaemon
from tests.conftest import REPO, synthetic_spec
from tests.integration.asha_check import check_asha
from tests.waits import WAIT_S, wait_until


def _command(spec: dict[str, Any]) -> dict[str, Any]:
    spec = dict(spec)
    spec.pop("entrypoint")
    spec["command"] = [sys.executable, "-m", "examples.synthetic.train"]
    return spec


def _assert_exact_results(trials: list[dict[str, Any]], export: dict[str, Any]) -> None:
    curves = {t["id"]: {m["epoch"]: m["loss"] for m in t["metrics"]} for t in export["trials"]}
    levels = (1, 3, 9, 27)
    for t in trials:
        for rung, value in t["results"].items():
            epoch = levels[int(rung)]
            assert curves[t["id"]][epoch] == value, (t["id"], rung)
            assert value == loss(t["params"]["lr"], t["params"]["momentum"], epoch)


def _assert_no_shared_gpu(events: list[dict[str, Any]]) -> None:
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    start: dict[int, tuple[float, list[str]]] = {}
    for ev in events:
        if ev["type"] == "segment_started":
            start[ev["attempt"]] = (ev["seq"], ev["gpus"])
        elif ev["type"] in ("result", "segment_failed", "segment_interrupted"):
            seq0, gpus = start.pop(ev["attempt"])
            for g in gpus:
                spans[g].append((seq0, ev["seq"]))
    assert not start, "segments without an end"
    for g, s in spans.items():
        s.sort()
        for (_, end), (begin, _) in itertools.pairwise(s):
            assert begin > end, f"two trials on {g} at once"
    assert len(spans) == 4


@pytest.mark.timeout(300)  # the wait below may take 240 s: a command trial per segment is CPU-bound
@pytest.mark.parametrize("kind", ["entrypoint", "command"])
def test_81_trial_asha_search_is_valid_and_exact(daemon: LocalDaemon, kind: str) -> None:
    """The acceptance search: 81 trials, 1..27 epochs, eta 3, on 4 fake GPUs."""
    spec = synthetic_spec(searcher={"max_trials": 81, "max_resource": 27})
    if kind == "command":
        spec = _command(spec)
    with daemon.client() as c:
        exp = c.submit(spec)
        status = exp.wait(timeout=240)
        assert status["state"] == "completed"
        trials = exp.trials()
        events = exp.events()
        export = exp.export()
    assert len(trials) == 81
    assert all(t["state"] in ("completed", "stopped") for t in trials)
    assert any(t["rung"] == 3 and t["state"] == "completed" for t in trials)
    assert check_asha(events, eta=3, mode="min", n_rungs=4) >= 27
    _assert_exact_results(trials, export)
    _assert_no_shared_gpu(events)
    uuids = {g for e in events if e["type"] == "segment_started" for g in e["gpus"]}
    assert all(u.startswith("GPU-") for u in uuids)
    if kind == "command":
        _assert_one_checkpoint_each(daemon, exp.id, trials)
    else:
        _assert_inline_checkpoints(daemon, exp.id, trials)


def _assert_inline_checkpoints(daemon: LocalDaemon, exp_id: int, trials: list[Any]) -> None:
    """The synthetic trial's state is tiny: in a warm worker it is kept in the database, once
    per trial, at the trial's last epoch, and no checkpoint directory is ever made."""
    conn = sqlite3.connect(f"file:{daemon.state / 'hpd.sqlite3'}?mode=ro", uri=True)
    try:
        rows = dict(conn.execute("SELECT trial_id, epoch FROM inline_checkpoints").fetchall())
    finally:
        conn.close()
    assert rows == {t["id"]: t["checkpoint_epoch"] for t in trials}
    root = daemon.state / "experiments" / str(exp_id) / "trials"
    assert not [p for p in root.iterdir() if p.is_dir()], "a trial made a directory"
    assert len(list(root.glob("*.log"))) == len(trials)  # beside the trials' dirs, not in them


def _assert_one_checkpoint_each(daemon: LocalDaemon, exp_id: int, trials: list[Any]) -> None:
    """Replaced checkpoints are deleted (after the segment's answer, so allow a moment)."""
    root = daemon.state / "experiments" / str(exp_id) / "trials"
    left: dict[int, list[str]] = {}

    def one_each() -> bool:
        nonlocal left
        left = {
            t["id"]: sorted(p.name for p in (root / str(t["id"]) / "checkpoints").iterdir())
            for t in trials
        }
        return all(len(names) == 1 for names in left.values())

    wait_until(one_each, what="one checkpoint left per trial", detail=lambda: left, interval=0.1)
    for t in trials:  # and the one left is the registered one: of the trial's last epoch
        assert re.fullmatch(rf"ckpt-{t['checkpoint_epoch']}-a\d+", left[t["id"]][0]), t


def test_same_seed_same_search_one_slot(daemon_factory: Any) -> None:
    """With one slot, two runs of the same spec take the same decisions."""
    seqs = []
    for _ in range(2):
        d = daemon_factory(fake_gpus=1).start()
        with d.client() as c:
            exp = c.submit(synthetic_spec())
            exp.wait(timeout=120)
            seqs.append([(e["type"], e.get("rung"), e["trial"] and e["trial"] - min(t["id"] for t in exp.trials())) for e in exp.events() if e["type"] in ("trial_created", "promoted", "result")])
        d.stop()
    assert seqs[0] == seqs[1]


@pytest.mark.parametrize("searcher", ["hyperband", "sha", "random"])
def test_other_searchers_complete(daemon: LocalDaemon, searcher: str) -> None:
    """hyperband, synchronous SHA and random search all finish with a best trial."""
    spec = synthetic_spec(searcher={"name": searcher, "max_trials": 18})
    with daemon.client() as c:
        exp = c.submit(spec)
        st = exp.wait(timeout=120)
        assert st["state"] == "completed"
        assert st["best"] is not None
        trials = exp.trials()
    assert len(trials) == 18
    if searcher == "random":
        assert all(t["resource"] == 9 and t["state"] == "completed" for t in trials)


def test_stop_and_restart_resumes_the_search(daemon: LocalDaemon) -> None:
    """SIGTERM stops trials gracefully; the next start finishes the same search exactly."""
    spec = synthetic_spec(space={"sleep": {"type": "choice", "values": [0.05]}})
    with daemon.client() as c:
        exp = c.submit(spec)
        wait_until(lambda: sum(1 for t in exp.trials() if t["results"]) >= 6)
    assert daemon.stop() == 0
    daemon.start()
    with daemon.client() as c:
        exp = c.experiment(exp.id)
        assert exp.wait(timeout=120)["state"] == "completed"
        events = exp.events()
        trials = exp.trials()
    # A segment in its last epoch at SIGTERM finishes and records its result; the others stop
    # after their epoch and resume from their checkpoint. Neither counts as a crash.
    assert not any(e["type"] == "segment_failed" for e in events)
    assert all(t["restarts"] == 0 for t in trials)
    check_asha(events, eta=3, mode="min", n_rungs=3)
    for t in trials:
        for rung, value in t["results"].items():
            assert value == loss(t["params"]["lr"], t["params"]["momentum"], (1, 3, 9)[int(rung)])


def test_pause_frees_gpus_and_resume_continues(daemon: LocalDaemon) -> None:
    """Pause checkpoints and frees every slot; resume continues to completion."""
    spec = synthetic_spec(space={"sleep": {"type": "choice", "values": [0.05]}})
    with daemon.client() as c:
        exp = c.submit(spec)
        wait_until(lambda: any(t["state"] == "running" for t in exp.trials()))
        assert exp.pause()["state"] == "paused"
        wait_until(lambda: c.call("daemon")["running"] == 0)
        assert exp.status()["state"] == "paused"
        assert not any(t["state"] == "running" for t in exp.trials())
        exp.resume()
        assert exp.wait(timeout=120)["state"] == "completed"


def test_cancel_stops_everything(daemon: LocalDaemon) -> None:
    """Cancel ends the experiment; no trial is left running."""
    spec = synthetic_spec(space={"sleep": {"type": "choice", "values": [0.2]}})
    with daemon.client() as c:
        exp = c.submit(spec)
        wait_until(lambda: any(t["state"] == "running" for t in exp.trials()))
        exp.cancel()
        wait_until(lambda: c.call("daemon")["running"] == 0)
        assert exp.status()["state"] == "cancelled"
        assert all(t["state"] in ("cancelled", "stopped", "completed") for t in exp.trials())


def test_cli_round_trip(daemon: LocalDaemon, tmp_path: Any) -> None:
    """submit/status/trials/best/events/export/logs through the CLI, with --json keys."""
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(synthetic_spec(searcher={"max_trials": 9})))

    def hpd(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "hpd", *args, "--state-dir", str(daemon.state)],
            env=daemon.env, capture_output=True, text=True, cwd=REPO, check=True,
        )
        return out.stdout

    exp_id = json.loads(hpd("submit", str(spec_path), "--json"))["id"]
    with daemon.client() as c:
        c.experiment(exp_id).wait(timeout=WAIT_S)
    status = json.loads(hpd("status", str(exp_id), "--json"))
    assert {"id", "name", "state", "trials", "best"} <= status.keys()
    assert {"trial", "value", "params"} <= status["best"].keys()
    trials = json.loads(hpd("trials", str(exp_id), "--json"))
    assert {"id", "state", "rung", "epoch", "params", "results", "gpu", "attempts"} <= trials[0].keys()
    events = json.loads(hpd("events", str(exp_id), "--json"))
    assert {"seq", "time", "type", "trial"} <= events[0].keys()
    types = {e["type"] for e in events}
    assert {"trial_created", "segment_started", "result", "promoted", "trial_completed"} <= types
    assert json.loads(hpd("best", str(exp_id), "--json"))["trial"] == status["best"]["trial"]
    csv_text = hpd("export", str(exp_id), "--format", "csv")
    assert csv_text.splitlines()[0].startswith("trial,state,rung,epoch,lr,momentum,loss")
    assert "[hpd] attempt" in hpd("logs", str(trials[0]["id"]))
    assert "synthetic" in hpd("ls")
    # a log where earlier builds wrote it, inside the trial's dir, is still found
    tdir = daemon.state / "experiments" / str(exp_id) / "trials"
    legacy = tdir / str(trials[1]["id"]) / "output.log"
    legacy.parent.mkdir(exist_ok=True)
    (tdir / f"{trials[1]['id']}.log").rename(legacy)
    assert "[hpd] attempt" in hpd("logs", str(trials[1]["id"]))
    assert [p.parent.name for p in tdir.glob("*/output.log")] == [str(trials[1]["id"])]


def test_bad_spec_changes_nothing(daemon: LocalDaemon, tmp_path: Any) -> None:
    """A bad spec prints every error with its field path and creates no experiment."""
    bad = synthetic_spec(searcher={"eta": 1.5, "max_trials": 0})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    out = subprocess.run(
        [sys.executable, "-m", "hpd", "submit", str(path), "--state-dir", str(daemon.state)],
        env=daemon.env, capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode == 2
    assert "searcher.eta: must be an integer >= 2, got 1.5" in out.stderr
    assert "searcher.max_trials" in out.stderr
    with daemon.client() as c:
        assert c.experiments() == []


def test_second_start_says_already_running(daemon: LocalDaemon) -> None:
    """A second start on the same state dir refuses and exits non-zero."""
    out = subprocess.run(
        [sys.executable, "-m", "hpd", "start", "--state-dir", str(daemon.state)],
        env=daemon.env, capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode != 0
    assert "already running" in out.stderr

