"""The tpe sampler is crash-only: a restarted daemon rebuilds it from the store alone.

A 1-slot search with a fixed seed is deterministic, and so are its model proposals (each is a
pure function of the results before it), so a daemon killed in the middle of the search must
end with exactly the ladder, parameters included, of an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

pytest.importorskip("optuna")

from tests.reliability.conftest import DaemonProc, base_spec, final_ladder, kill_descendants_of
from tests.reliability.test_crash_points import _run_case, _submit

TPE = base_spec(
    searcher={
        "max_trials": 14,
        "max_resource": 9,
        "min_resource": 1,
        "eta": 3,
        "sampler": "tpe",
        "sampler_options": {"n_startup": 4},
    },
    resources={"gpus_per_trial": 0, "max_concurrent": 1},
    entrypoint="tests.reliability.trials:rung_checkpoint",
)


def _proposals(d: DaemonProc) -> list[tuple[int, str, str]]:
    rows = d.sql("SELECT data FROM events WHERE type = 'trial_created' ORDER BY seq")
    out = []
    for (data,) in rows:
        ev = json.loads(data)
        out.append(
            (ev["index"], ev["proposal"]["sampler"], json.dumps(ev["params"], sort_keys=True))
        )
    return out


@pytest.fixture(scope="module")
def tpe_reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    made: list[DaemonProc] = []

    def make(**kw: Any) -> DaemonProc:
        root = tmp_path_factory.mktemp("hpdtpe")
        d = DaemonProc(root / "state", **kw)
        made.append(d)
        return d

    seen: dict[str, Any] = {}
    died, ladder = _run_case(make, "", spec=TPE, check=lambda d: seen.update(p=_proposals(d)))
    for d in made:
        if d.alive():
            d.kill9()
        kill_descendants_of(d.pids[-1])
    assert not died and len(ladder) == 14
    samplers = [s for _, s, _ in seen["p"]]
    assert samplers[:4] == ["random"] * 4 and set(samplers[4:]) == {"tpe"}, samplers
    return ladder, seen["p"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "fault",
    [
        "crash:after_commit:create_trial:7",  # right after a model proposal was recorded
        "crash:before_commit:create_trial:9",  # a model proposal made, then lost unrecorded
        "crash:before_commit:result:8",
    ],
)
def test_model_proposals_survive_a_crash(tpe_reference: Any, make_daemon: Any, fault: str) -> None:
    ladder, proposals = tpe_reference
    seen: dict[str, Any] = {}
    died, got = _run_case(
        make_daemon, fault, spec=TPE, check=lambda d: seen.update(p=_proposals(d))
    )
    assert died, f"{fault} never reached"
    assert got == ladder
    assert seen["p"] == proposals


@pytest.mark.timeout(300)
def test_model_proposals_survive_kill_9_mid_search(tpe_reference: Any, make_daemon: Any) -> None:
    """An outside SIGKILL at whatever moment the 8th trial exists, then a restart."""
    ladder, proposals = tpe_reference
    d: DaemonProc = make_daemon(cpu_slots=1)
    d.start()
    exp_id = _submit(d, TPE)
    assert exp_id is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with d.client() as c:
            if len(c.call("trials", exp=exp_id)) >= 8:
                break
        time.sleep(0.02)
    else:
        raise AssertionError(f"8 trials never existed:\n{d.tail()}")
    pid = d.kill9()
    kill_descendants_of(pid)
    d.start()
    with d.client(timeout=30) as c:
        status = c.experiment(exp_id).wait(timeout=240)
        assert status["state"] == "completed", status
        trials = c.call("trials", exp=exp_id)
    d.stop()
    assert final_ladder(trials) == ladder
    assert _proposals(d) == proposals
