"""``hpd tui`` in a real terminal (tmux 160x45) against a live search, read with capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO
from tests.tui.conftest import live_spec
from tests.waits import wait_until

WANT = ("synthetic", "running", "GPUs", "gpu0:0", "ladder", "subset timings", "trials")


def _tmux(sock: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, check=False)


def test_hpd_tui_under_tmux(daemon: Any) -> None:
    """The acceptance screen: experiment, trial states, ladder, GPUs, subset view; q quits."""
    if shutil.which("tmux") is None:
        print("tmux is not installed (apt-get install -y tmux): skipping the terminal test")
        pytest.skip("tmux is not installed")
    daemon.client().submit(live_spec(max_trials=81))
    sock = f"hpd-tui-test-{os.getpid()}"
    env = f"env -u XDG_RUNTIME_DIR PYTHONPATH={REPO} TERM=xterm-256color"
    cmd = f"{env} {sys.executable} -m hpd tui --state-dir {daemon.state}"
    _tmux(sock, "new-session", "-d", "-s", "tui", "-x", "160", "-y", "45", cmd)
    try:
        screen = ""

        def shows_all() -> bool:
            nonlocal screen
            screen = _tmux(sock, "capture-pane", "-p", "-t", "tui").stdout
            return all(w in screen for w in WANT)

        wait_until(shows_all, what="the main screen in tmux", detail=lambda: screen, interval=0.3)
        assert "Traceback" not in screen
        _tmux(sock, "send-keys", "-t", "tui", "q")
        wait_until(
            lambda: _tmux(sock, "has-session", "-t", "tui").returncode != 0,
            what="hpd tui quitting on q",
            detail=lambda: _tmux(sock, "capture-pane", "-p", "-t", "tui").stdout,
            interval=0.1,
        )
    finally:
        _tmux(sock, "kill-server")
