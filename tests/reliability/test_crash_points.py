"""Crash at every labelled point of the daemon's write paths (R2b/R2c).

``HPD_FAULT=crash:before_commit:LABEL:N`` / ``after_commit:LABEL:N`` kill the daemon the N-th time
it reaches that commit. With one slot and a fixed seed the search is deterministic, so after a
restart it must end with exactly the ladder of an uninterrupted run.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import pytest

from hpd.errors import HpdError
from tests.integration.asha_check import check_asha
from tests.reliability.conftest import DaemonProc, base_spec, final_ladder, wait_no_processes_of
from tests.waits import WAIT_S, wait_until

SPEC = base_spec(
    searcher={"max_trials": 9, "max_resource": 9, "min_resource": 1, "eta": 3},
    resources={"gpus_per_trial": 0, "max_concurrent": 1},
    # checkpoints once per segment, so reports also commit on their own ('reports' label)
    entrypoint="tests.reliability.trials:rung_checkpoint",
)
# command trials (one process per segment, the only ones with an attempt_pid commit)
COMMAND_SPEC = {k: v for k, v in SPEC.items() if k != "entrypoint"}
COMMAND_SPEC["command"] = ["python", "-m", "examples.synthetic.train"]

# label -> how often one uninterrupted run reaches it (only reachable N are meaningful)
LABELS = {
    "submit": (1,),
    "create_trial": (1, 2, 5),
    "promote": (1, 2, 4),
    "start_attempt": (1, 2, 5),
    "reports": (1, 2, 5),
    "checkpoint": (1, 2, 5),
    "result": (1, 2, 5),
    "finish": (1,),
}
CASES = [(f"{w}:{label}", n) for label, ns in LABELS.items() for n in ns for w in ("before_commit", "after_commit")]


def _submit(d: DaemonProc, spec: dict[str, Any]) -> int | None:
    try:
        with d.client(timeout=30) as c:
            return int(c.submit(spec).id)
    except (HpdError, OSError):
        return None  # the daemon died inside submit


def _finish(d: DaemonProc, timeout: float = WAIT_S) -> list[dict[str, Any]]:
    with d.client(timeout=30) as c:
        def ended() -> list[dict[str, Any]]:
            exps = c.experiments()
            if exps and all(e["state"] in ("completed", "failed", "cancelled") for e in exps):
                return exps  # type: ignore[no-any-return]
            return []

        exps = wait_until(ended, timeout, what="search finished", detail=d.tail)
        assert len(exps) == 1, exps
        assert exps[0]["state"] == "completed", exps
        return c.call("trials", exp=exps[0]["id"])  # type: ignore[no-any-return]


def _run_case(
    make: Any,
    fault: str,
    restart_faults: tuple[str, ...] = (),
    spec: dict[str, Any] = SPEC,
    check: Any = None,
) -> tuple[bool, Any]:
    """Run the search with ``fault``; restart (through ``restart_faults``) until it completes."""
    d = make(cpu_slots=1)
    d.start(fault=fault)
    exp_id = _submit(d, spec)

    def died_or_done() -> str | None:
        if not d.alive():
            return "died"
        try:
            with d.client(timeout=10) as c:
                exps = c.experiments()
        except (HpdError, OSError):
            return None
        return "done" if exps and exps[0]["state"] == "completed" else None

    died = wait_until(died_or_done, what=f"{fault}: a crash or the end", detail=d.tail) == "died"
    if died:
        assert d.proc is not None and d.proc.returncode == 137, d.tail()
        assert not wait_no_processes_of(d.pids[-1]), f"{fault}: orphans"
        assert d.integrity() == "ok"
        for extra in restart_faults:
            d.start(fault=extra, wait=False)
            assert d.wait_exit(WAIT_S) == 137, f"{extra} not reached:\n{d.tail()}"
            assert not wait_no_processes_of(d.pids[-1]), f"{extra}: orphans"
            assert d.integrity() == "ok"
        d.start()
        if exp_id is None and not d.client().experiments():
            exp_id = _submit(d, spec)  # the submit was never acknowledged: the user submits again
    trials = _finish(d)
    d.stop()
    assert d.integrity() == "ok"
    assert d.sql("SELECT COUNT(*) FROM attempts WHERE ended_at IS NULL") == [(0,)]
    # every recorded epoch belongs to a recorded attempt
    assert d.sql("SELECT COUNT(*) FROM metrics WHERE attempt NOT IN (SELECT id FROM attempts)") == [(0,)]
    if check is not None:
        check(d)
    return died, final_ladder(trials)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.reliability.conftest import kill_descendants_of

    made: list[DaemonProc] = []

    def make(**kw: Any) -> DaemonProc:
        root = tmp_path_factory.mktemp("hpdref")
        d = DaemonProc(root / "state", **kw)
        made.append(d)
        return d

    died, ladder = _run_case(make, "")
    cdied, cladder = _run_case(make, "", spec=COMMAND_SPEC)
    for d in made:
        if d.alive():
            d.kill9()
        kill_descendants_of(d.pids[-1])
    assert not died and not cdied
    assert len(ladder) == 9
    assert cladder == ladder  # the same search, as warm-worker calls or as processes
    return ladder


@pytest.mark.timeout(300)
def test_every_labelled_crash_point_ends_with_the_reference_ladder(
    reference: Any, make_daemon: Any
) -> None:
    results: dict[str, bool] = {}
    failures: list[str] = []

    def one(case: tuple[str, int]) -> None:
        point, n = case
        fault = f"crash:{point}:{n}"
        try:
            died, ladder = _run_case(make_daemon, fault)
            results[fault] = died
            if ladder != reference:
                failures.append(f"{fault}: ladder differs\n{ladder}\n!=\n{reference}")
        except AssertionError as exc:
            failures.append(f"{fault}: {exc}")

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(one, CASES))
    crashed = sorted(f for f, died in results.items() if died)
    print(f"\n{len(CASES)} labelled crash runs in {time.monotonic() - t0:.1f} s; "
          f"{len(crashed)} crashed at their point and recovered to the reference ladder")
    assert not failures, "\n\n".join(failures)
    missed = sorted(f for f, died in results.items() if not died)
    assert not missed, f"crash points never reached: {missed}"


@pytest.mark.parametrize(
    "second",
    [
        "crash:before_commit:recover_attempts:1",
        "crash:after_commit:recover_attempts:1",
        "crash:before_commit:requeue:1",
        "crash:after_commit:requeue:1",
    ],
)
def test_crash_during_recovery(reference: Any, make_daemon: Any, second: str) -> None:
    died, ladder = _run_case(make_daemon, "crash:after_commit:start_attempt:3", (second,))
    assert died
    assert ladder == reference


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_crash_at_attempt_pid_of_command_trials(
    reference: Any, make_daemon: Any, point: str, n: int
) -> None:
    died, ladder = _run_case(make_daemon, f"crash:{point}:attempt_pid:{n}", spec=COMMAND_SPEC)
    assert died
    assert ladder == reference


@pytest.mark.parametrize("n", [1, 3, 4])
def test_a_start_that_fails_to_commit_is_undone(
    reference: Any, make_daemon: Any, n: int
) -> None:
    """A decision whose commit fails is undone in memory: the daemon degrades, recovers on
    its next healthy commit, and the search ends as if that decision had never been made."""
    def injected(d: DaemonProc) -> None:
        assert "disk I/O error (injected)" in d.tail(), d.tail()

    died, ladder = _run_case(make_daemon, f"fail:before_commit:start_attempt:{n}", check=injected)
    assert not died
    assert ladder == reference


@pytest.mark.parametrize("n", [1, 2])
def test_a_batch_of_starts_that_fails_to_commit_is_undone(make_daemon: Any, n: int) -> None:
    """Four slots: the first scheduling pass decides four launches and records them in one
    commit. That commit fails (n = 1; n = 2: a later, smaller batch): every launch of it is
    revoked in reverse order, the daemon recovers, and the search is a valid ASHA run whose
    ladder a restarted daemon rebuilds from the log."""
    spec = {**SPEC, "resources": {"gpus_per_trial": 0, "max_concurrent": 4}}
    d = make_daemon(cpu_slots=4)
    d.start(fault=f"fail:before_commit:start_attempt:{n}")
    exp_id = _submit(d, spec)
    assert exp_id is not None
    trials = _finish(d)
    assert "disk I/O error (injected)" in d.tail(), d.tail()
    with d.client(timeout=30) as c:
        events = c.call("events", exp=exp_id)
    d.stop()
    assert len(trials) == 9 and all(t["state"] in ("completed", "stopped") for t in trials)
    assert sorted(t["index"] for t in trials) == list(range(9))
    assert check_asha(events, eta=3, mode="min", n_rungs=3) >= 4  # raises on a bad one
    d.start()  # the log replays into the same ladder
    with d.client(timeout=30) as c:
        assert final_ladder(c.call("trials", exp=exp_id)) == final_ladder(trials)
    d.stop()
