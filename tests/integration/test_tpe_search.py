"""The tpe sampler through the real daemon: a valid ASHA search whose configurations after the
random start come from the model, each explained in its trial_created event."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hpd.errors import HpdError
from tests.conftest import REPO, LocalDaemon, synthetic_spec
from tests.integration.asha_check import check_asha

TPE = {"sampler": "tpe", "sampler_options": {"n_startup": 8}}


@pytest.mark.timeout(300)
def test_tpe_search_is_valid_asha_and_explains_its_proposals(daemon: LocalDaemon) -> None:
    pytest.importorskip("optuna")
    spec = synthetic_spec(searcher={"max_trials": 40, "max_resource": 9, **TPE})
    with daemon.client() as c:
        exp = c.submit(spec)
        status = exp.wait(timeout=240)
        assert status["state"] == "completed"
        events = exp.events()
        trials = exp.trials()
    assert len(trials) == 40
    assert check_asha(events, eta=3, mode="min", n_rungs=3) >= 9
    created = [e for e in events if e["type"] == "trial_created"]
    startup = [e for e in created if e["proposal"]["sampler"] == "random"]
    model = [e for e in created if e["proposal"]["sampler"] == "tpe"]
    assert len(startup) >= 8 and len(model) >= 20 and len(startup) + len(model) == 40
    assert all(e["proposal"]["startup"]["n_startup"] == 8 for e in startup)
    for e in model:
        p = e["proposal"]
        assert p["observations"] >= 8 and sum(p["by_resource"].values()) == p["observations"]
        assert p["running"] <= 3  # the other slots' trials, told to the model as lies
        assert p["summary"].startswith("tpe from ")
    # the first proposals are exactly what the random sampler draws for the same seed
    with daemon.client() as c:
        rnd = c.submit(synthetic_spec(searcher={"max_trials": 8, "max_resource": 9}))
        rnd.wait(timeout=240)
        random_params = {t["index"]: t["params"] for t in rnd.trials()}
    by_index = {t["index"]: t["params"] for t in trials}
    assert all(by_index[i] == random_params[i] for i in range(4))


def test_events_cli_says_who_proposed(daemon: LocalDaemon) -> None:
    pytest.importorskip("optuna")
    spec = synthetic_spec(searcher={"max_trials": 12, "max_resource": 3, **TPE})
    with daemon.client() as c:
        exp = c.submit(spec)
        exp.wait(timeout=240)
    out = subprocess.run(
        [sys.executable, "-m", "hpd", "events", str(exp.id), "--state-dir", str(daemon.state)],
        capture_output=True,
        text=True,
        env=daemon.env,
        cwd=REPO,
        check=True,
        timeout=60,
    ).stdout
    assert "random start of tpe" in out and "tpe from " in out


def test_tpe_without_optuna_is_refused_at_submit(daemon_factory: Any, tmp_path: Path) -> None:
    """A daemon that cannot import Optuna refuses a tpe spec, naming the extra; nothing is made."""
    blocker = tmp_path / "no_optuna"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoOptuna:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'optuna' or name.startswith('optuna.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'optuna'\")\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoOptuna())\n"
    )
    d = daemon_factory(PYTHONPATH=f"{blocker}:{REPO}").start()
    with d.client() as c:
        with pytest.raises(HpdError) as info:
            c.submit(synthetic_spec(searcher=TPE))
        assert "searcher.sampler: the tpe sampler needs Optuna" in str(info.value)
        assert 'pip install "hpd[tpe]"' in str(info.value)
        assert c.experiments() == []
        c.submit(synthetic_spec()).wait(timeout=240)  # random searches are unaffected
    log = (d.state.parent / "daemon.out").read_text()
    assert "Traceback" not in log, log[-2000:]
