"""hpd's slots on a Ray cluster (``hpd start --ray``), through the real daemon, socket and SQLite
file, on a local cluster of several raylets with fake GPUs (``tests/ray/conftest.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, synthetic_spec
from tests.integration.asha_check import check_asha
from tests.ray.conftest import GPUS_PER_NODE, slot_actor_pids
from tests.waits import WAIT_S, wait_until

pytestmark = pytest.mark.timeout(600)


def _slow(spec: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Each epoch sleeps ``seconds`` (a one-value choice, so the search's params stay as they were)."""
    spec["space"]["sleep"] = {"type": "choice", "values": [seconds]}
    return spec


def _nodes_used(events: list[dict[str, Any]], gpus: list[dict[str, Any]]) -> set[str]:
    node_of = {g["uuid"]: g["node"] for g in gpus if g["uuid"]}
    return {node_of[u] for e in events if e["type"] == "segment_started" for u in e["gpus"]}


def test_the_81_trial_asha_search_runs_on_the_cluster(ray_daemon: Any) -> None:
    """The acceptance search on 8 GPU slots over two nodes: a valid ASHA ladder, every
    segment on an actor, slots shown by node."""
    d = ray_daemon().start()
    spec = synthetic_spec(
        searcher={"max_trials": 81, "max_resource": 27},
        resources={"gpus_per_trial": 1, "max_concurrent": 8},
    )
    with d.client() as c:
        gpus = c.call("gpus")
        gpu_slots = [g for g in gpus if g["uuid"]]
        assert len(gpu_slots) == 2 * GPUS_PER_NODE
        assert len({g["node"] for g in gpus}) == 2  # slots are shown by node
        exp = c.submit(spec)
        status = exp.wait(timeout=WAIT_S * 3)
        assert status["state"] == "completed", status
        trials, events = exp.trials(), exp.events()
        log = c.call("logs", trial=trials[0]["id"])["text"]
    assert len(trials) == 81
    assert all(t["state"] in ("completed", "stopped") for t in trials)
    assert check_asha(events, eta=3, mode="min", n_rungs=4) >= 27
    assert len(_nodes_used(events, gpus)) == 2  # both nodes ran segments
    assert "CUDA_VISIBLE_DEVICES=" in log and " node " in log  # Ray's GPU, not the lease's name
    info = _cli(d, "status", "--json")
    nodes = json.loads(info)["nodes"]
    assert [(n["gpu_slots"], n["cpu_slots"]) for n in nodes] == [(GPUS_PER_NODE, 1)] * 2
    human = _cli(d, "status")
    assert "GPU SLOTS" in human and all(n["node"] in human for n in nodes)


def _cli(d: Any, *args: str) -> str:
    cmd = [sys.executable, "-m", "hpd", args[0], "--state-dir", str(d.state), *args[1:]]
    out = subprocess.run(cmd, env=d.env, capture_output=True, text=True, timeout=WAIT_S)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_two_gpu_trial_gets_both_gpus_on_one_node(ray_daemon: Any) -> None:
    d = ray_daemon().start()
    spec = synthetic_spec(
        searcher={"max_trials": 9}, resources={"gpus_per_trial": 2, "max_concurrent": 4}
    )
    with d.client() as c:
        gpus = c.call("gpus")
        exp = c.submit(spec)
        assert exp.wait(timeout=WAIT_S * 2)["state"] == "completed"
        events = exp.events()
    node_of = {g["uuid"]: g["node"] for g in gpus if g["uuid"]}
    starts = [e for e in events if e["type"] == "segment_started"]
    assert starts and all(len(e["gpus"]) == 2 for e in starts)
    assert all(len({node_of[u] for u in e["gpus"]}) == 1 for e in starts)


def test_remote_gpus_are_sampled_and_min_free_memory_holds(ray_daemon: Any) -> None:
    """Each node's GPUs are sampled there (fakes here: 81,559 MB each), shown per slot, and
    a search that asks for free memory runs on them."""
    d = ray_daemon().start()
    with d.client() as c:

        def sampled() -> list[dict[str, Any]]:
            remote = [g for g in c.call("gpus") if g["uuid"]]
            return remote if all(g["memory_total_mb"] == 81559 for g in remote) else []

        assert len(wait_until(sampled, what="every remote GPU sampled")) == 2 * GPUS_PER_NODE
        spec = synthetic_spec(searcher={"max_trials": 9}, resources={"min_free_memory_mb": 1000})
        assert c.submit(spec).wait(timeout=WAIT_S)["state"] == "completed"


def test_reports_reach_the_daemon_while_a_remote_segment_runs(ray_daemon: Any) -> None:
    """Live curves: a trial's epochs show up before its segment ends."""
    d = ray_daemon().start()
    spec = _slow(
        synthetic_spec(
            searcher={"name": "random", "max_trials": 2, "min_resource": 9, "max_resource": 9}
        ),
        0.3,
    )
    with d.client() as c:
        exp = c.submit(spec)

        def mid_segment() -> bool:
            return any(t["state"] == "running" and 2 <= t["epoch"] < 9 for t in exp.trials())

        wait_until(mid_segment, what="a running trial's epoch between 2 and 8")
        assert exp.wait(timeout=WAIT_S)["state"] == "completed"


def test_a_silent_remote_trial_is_killed_by_the_progress_timeout(ray_daemon: Any) -> None:
    """No report for progress_timeout_s: the engine's SIGKILL ends the actor (ray.kill); the
    trial's crash is counted, and the slot gets a new actor for what follows."""
    d = ray_daemon().start()
    spec = _slow(
        synthetic_spec(
            searcher={"name": "random", "max_trials": 2, "min_resource": 1, "max_resource": 1},
            resources={"gpus_per_trial": 1, "max_concurrent": 1},
            limits={"progress_timeout_s": 2, "max_restarts": 0},
        ),
        600.0,
    )
    with d.client() as c:
        exp = c.submit(spec)
        assert exp.wait(timeout=WAIT_S)["state"] == "failed"
        trials = exp.trials()
    assert [t["state"] for t in trials] == ["failed", "failed"]  # the second ran on a new actor
    assert all("no progress for 2 s" in (t["error"] or "") for t in trials)


def test_command_trials_run_as_processes_of_the_actors(ray_daemon: Any) -> None:
    d = ray_daemon().start()
    spec = synthetic_spec(searcher={"max_trials": 9})
    spec.pop("entrypoint")
    spec["command"] = [sys.executable, "-m", "examples.synthetic.train"]
    with d.client() as c:
        exp = c.submit(spec)
        assert exp.wait(timeout=WAIT_S * 2)["state"] == "completed"
        trials = exp.trials()
    assert len(trials) == 9 and all(t["state"] in ("completed", "stopped") for t in trials)
    assert sum(t["restarts"] for t in trials) == 0


@pytest.mark.parametrize("graceful", [True, False], ids=["node-removed", "node-crashed"])
def test_a_node_lost_mid_search_requeues_its_segments_and_loses_nothing(
    cluster: Any, ray_daemon: Any, graceful: bool
) -> None:
    """Removed (the raylet stops its workers) or crashed (its raylet SIGKILLed: Ray first says
    only "unavailable", and declares the node dead after its health checks, ~15 s)."""
    extra = cluster.add_node(num_cpus=1, num_gpus=GPUS_PER_NODE)
    cluster.wait_for_nodes()
    d = ray_daemon().start()
    spec = _slow(
        synthetic_spec(
            searcher={"max_trials": 27, "max_resource": 9},
            resources={"gpus_per_trial": 1, "max_concurrent": 12},
        ),
        0.4,
    )
    with d.client() as c:
        gpus = c.call("gpus")
        extra_node = next(g["node"] for g in gpus if g["node"].startswith(extra.node_id[:8]))
        exp = c.submit(spec)

        def on_extra() -> bool:
            busy = [g for g in c.call("gpus") if g["trials"] and g["node"] == extra_node]
            return bool(busy) and any(t["results"] for t in exp.trials())

        wait_until(on_extra, what="segments on the extra node and a first result")
        before = {t["id"]: dict(t["results"]) for t in exp.trials()}
        cluster.remove_node(extra, allow_graceful=graceful)
        status = exp.wait(timeout=WAIT_S * 3)
        assert status["state"] == "completed", status
        trials, events = exp.trials(), exp.events()
        after_gpus = c.call("gpus")
    lost = [e for e in events if e["type"] == "segment_interrupted" and e.get("reason") == "lost"]
    assert lost, "no segment was lost with the node"
    assert all("left the cluster" in (e.get("detail") or "") for e in lost)
    assert sum(t["restarts"] for t in trials) == 0  # a lost node is not the trial's fault
    after = {t["id"]: t["results"] for t in trials}
    for tid, results in before.items():  # 0 acknowledged results lost
        for rung, value in results.items():
            assert after[tid][rung] == value
    assert check_asha(events, eta=3, mode="min", n_rungs=3) >= 9
    assert all(g["node"] != extra_node for g in after_gpus)  # its slots are gone


def test_kill_9_ends_the_daemons_actors_and_the_search_resumes(ray_daemon: Any) -> None:
    d = ray_daemon().start()
    spec = _slow(synthetic_spec(searcher={"max_trials": 18, "max_resource": 9}), 0.2)
    with d.client() as c:
        exp = c.submit(spec)
        wait_until(lambda: sum(bool(t["results"]) for t in exp.trials()) >= 4, what="4 results")
        wait_until(slot_actor_pids, what="slot actors running")
        before = {t["id"]: dict(t["results"]) for t in exp.trials()}
    d.kill()
    # Ray ends the actors of a dead driver: none keeps running a segment unnoticed.
    wait_until(lambda: not slot_actor_pids(), what="the dead daemon's actors ending")
    d.start()
    with d.client() as c:
        exp = c.experiment(exp.id)
        assert exp.wait(timeout=WAIT_S * 2)["state"] == "completed"
        after = {t["id"]: t["results"] for t in exp.trials()}
        events = exp.events()
    for tid, results in before.items():  # nothing acknowledged is lost
        for rung, value in results.items():
            assert after[tid][rung] == value
    assert check_asha(events, eta=3, mode="min", n_rungs=3) >= 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ray", "127.0.0.1:1"], "no Ray cluster answers there"),
        (["--ray", "not-an-address"], "expected HOST:PORT"),
        (["--checkpoint-root", "/tmp"], "--checkpoint-root: only with --ray"),
    ],
)
def test_bad_ray_options_are_refused_with_a_clear_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    t0 = time.monotonic()
    out = _start(tmp_path, args)
    assert out.returncode != 0 and message in out.stderr, out.stderr
    assert time.monotonic() - t0 < 60  # refused, not retried for minutes
    assert not (tmp_path / "state" / "hpd.sqlite3").exists() or "--ray" not in args


def test_a_missing_ray_extra_is_refused_with_the_install_command(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('ray is blocked for this test')\n")
    out = _start(tmp_path, ["--ray", "auto"], pythonpath=f"{blocker.parent}:{REPO}")
    assert out.returncode != 0
    assert 'pip install "hpd[ray]"' in out.stderr, out.stderr


def _start(tmp_path: Path, args: list[str], pythonpath: str = str(REPO)) -> Any:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("HPD_")}
    env.pop("XDG_RUNTIME_DIR", None)
    env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "hpd", "start", "--foreground", "--state-dir", str(tmp_path / "state")]
    return subprocess.run(
        [*cmd, *args], env=env, capture_output=True, text=True, timeout=WAIT_S, cwd=REPO
    )
