"""The shared harness itself (``hpd.client.local.LocalDaemon``): what every other daemon test
and benchmark stands on."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpd.client.local import LocalDaemon
from tests.conftest import REPO


def test_a_local_daemon_starts_answers_and_stops_gracefully(tmp_path: Path) -> None:
    d = LocalDaemon(tmp_path / "state", fake_gpus=2, extra_env={"PYTHONPATH": str(REPO)})
    assert "HPD_HOME" not in d.env and d.env["HPD_FAKE_GPUS"] == "2"
    with d:
        assert d.alive()
        assert d.client().ping()["pid"] == d.proc.pid  # type: ignore[union-attr]
    assert not d.alive() and d.proc is not None and d.proc.returncode == 0
    assert (tmp_path / "state" / "hpd.sqlite3").exists()


def test_a_daemon_that_cannot_start_is_reported_with_its_output(tmp_path: Path) -> None:
    d = LocalDaemon(tmp_path / "state", args=["--gpus", "no-such-gpu"])
    with pytest.raises(RuntimeError, match="exited") as err:
        d.start()
    assert "hpd: " in str(err.value)  # the daemon's own error line, from its output
