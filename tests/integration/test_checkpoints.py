"""Checkpoints through the real daemon: small states kept in its database, larger ones in
directories, a trial moving between the two, and resumes across a graceful restart."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from examples.synthetic.train import loss
from tests.conftest import synthetic_spec
from tests.waits import wait_until


def _sql(state: Any, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{state / 'hpd.sqlite3'}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _search_across_a_restart(daemon_factory: Any, slots: int = 2) -> tuple[Any, list[Any]]:
    """9 trials of ``growing_state``, stopped gracefully after 6 results, restarted and
    finished; checks the results are the exact curve values."""
    d = daemon_factory(fake_gpus=slots).start()
    spec = synthetic_spec(
        entrypoint="tests.reliability.trials:growing_state",
        searcher={"max_trials": 9, "max_resource": 9},
        resources={"max_concurrent": slots},
    )
    with d.client() as c:
        exp = c.submit(spec)
        wait_until(
            lambda: len([e for e in exp.events() if e["type"] == "result"]) >= 6,
            what="6 results",
        )
    d.stop()  # paused trials now hold inline and directory checkpoints
    paused = _sql(d.state, "SELECT ckpt_path FROM trials WHERE state = 'paused'")
    assert ("inline",) in paused, paused
    d.start()  # inline states are read back from the database when a trial is promoted
    with d.client() as c:
        st = c.experiment(exp.id).wait(timeout=120)
        trials = c.experiment(exp.id).trials()
        export = c.experiment(exp.id).export()
    assert st["state"] == "completed", st
    failed = [t for t in trials if t["state"] not in ("completed", "stopped")]
    assert not failed, failed  # a wrong resume raises in the trial, and would show here
    curves = {t["id"]: {m["epoch"]: m["loss"] for m in t["metrics"]} for t in export["trials"]}
    for t in trials:
        for rung, value in t["results"].items():
            epoch = (1, 3, 9)[int(rung)]
            assert (
                value
                == curves[t["id"]][epoch]
                == loss(t["params"]["lr"], t["params"]["momentum"], epoch)
            )
    return d, trials


def test_states_move_between_database_and_directories_across_a_restart(
    daemon_factory: Any,
) -> None:
    d, trials = _search_across_a_restart(daemon_factory)
    # The registered checkpoint is of the trial's last epoch; only epoch 3's state is a
    # directory; an inline row exists exactly for trials whose checkpoint is inline.
    rows = dict(_sql(d.state, "SELECT id, ckpt_path FROM trials"))
    inline = dict(_sql(d.state, "SELECT trial_id, epoch FROM inline_checkpoints"))
    for t in trials:
        path = rows[t["id"]]
        if t["checkpoint_epoch"] == 3:
            assert re.fullmatch(r".*/checkpoints/ckpt-3-a\d+", path) and t["id"] not in inline
        else:
            assert path == "inline" and inline[t["id"]] == t["checkpoint_epoch"]
    assert any(t["checkpoint_epoch"] == 3 for t in trials)
    assert any(t["checkpoint_epoch"] == 9 for t in trials)


def test_a_missing_inline_state_means_starting_over(daemon_factory: Any) -> None:
    """Only a hand-edited database loses one; the trial then runs again from epoch 1 (its
    resume check would fail on any other start) instead of stalling the search.

    One slot and a fixed seed: the daemon dies right after its second promotion has started
    (a trial paused at rung 0 with an inline state), so the restart resumes that trial."""
    d = daemon_factory(fake_gpus=1, HPD_FAULT="crash:after_commit:promote:2").start()
    spec = synthetic_spec(
        entrypoint="tests.reliability.trials:growing_state",
        searcher={"max_trials": 9, "max_resource": 9},
        resources={"max_concurrent": 1},
    )
    with d.client() as c:
        exp_id = c.submit(spec).id
    assert d.proc is not None and d.proc.wait(timeout=60) == 137
    [(trial, before)] = _sql(
        d.state, "SELECT trial_id, id FROM attempts WHERE ended_at IS NULL AND rung = 1"
    )
    assert _sql(d.state, f"SELECT ckpt_path FROM trials WHERE id = {trial}") == [("inline",)]
    conn = sqlite3.connect(d.state / "hpd.sqlite3")
    with conn:
        conn.execute("DELETE FROM inline_checkpoints")
    conn.close()
    d.env.pop("HPD_FAULT")
    d.start()
    with d.client() as c:
        assert c.experiment(exp_id).wait(timeout=120)["state"] == "completed"
        t = next(t for t in c.experiment(exp_id).trials() if t["id"] == trial)
    assert t["state"] in ("completed", "stopped") and "1" in t["results"], t
    # epoch 1 was run again, by an attempt after the restart
    [(attempt,)] = _sql(
        d.state, f"SELECT attempt FROM metrics WHERE trial_id = {trial} AND epoch = 1"
    )
    assert attempt > before
    assert "starts over" in (d.state.parent / "daemon.out").read_text()
