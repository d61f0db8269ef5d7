"""Where hpd keeps its files: the state dir, the socket, logs and checkpoints.

Owns path resolution only. Every path a trial or spec could influence is generated here from
daemon-assigned integers, so nothing a spec holds can escape the state dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--state-dir``, else ``$HPD_HOME``, else ``$XDG_STATE_HOME/hpd`` (~/.local/state/hpd)."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    home = os.environ.get("HPD_HOME")
    if home:
        return Path(home).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return (Path(xdg) / "hpd").resolve()


def _runtime_key(state: Path) -> str:
    # Several daemons (tests, users with two state dirs) may share one XDG_RUNTIME_DIR, so the
    # socket name carries a short digest of the state dir it belongs to.
    import hashlib

    return hashlib.sha256(str(state).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Layout:
    """The files of one daemon instance. Trials' logs and checkpoints live under ``trials_root``
    when one is set (``--checkpoint-root``: a directory every node of a Ray cluster mounts),
    else in the state dir."""

    state: Path
    trials_root: Path | None = None

    @property
    def db(self) -> Path:
        return self.state / "hpd.sqlite3"

    @property
    def lock(self) -> Path:
        return self.state / "hpd.lock"

    @property
    def daemon_log(self) -> Path:
        return self.state / "daemon.log"

    @property
    def socket_dir(self) -> Path:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime and Path(runtime).is_dir():
            return Path(runtime) / "hpd"
        return self.state / "run"

    @property
    def socket(self) -> Path:
        path = self.socket_dir / f"hpd-{_runtime_key(self.state)}.sock"
        # AF_UNIX paths are limited to 107 bytes; fall back to the state dir's short name.
        if len(str(path)) > 100:
            return self.state / "hpd.sock"
        return path

    # Built as one string: three paths per segment on the daemon's loop, and pathlib's
    # joining costs tens of microseconds each.
    def trial_dir(self, exp_id: int, trial_id: int) -> Path:
        return Path(
            f"{self.trials_root or self.state}/experiments/{int(exp_id)}/trials/{int(trial_id)}"
        )

    def trial_log(self, exp_id: int, trial_id: int) -> Path:
        # Beside the trial's dir, not in it: most trials never need a dir (their checkpoints
        # are inline), and a mkdir per trial costs ~0.4 ms of kernel time on ext4.
        return Path(
            f"{self.trials_root or self.state}/experiments/{int(exp_id)}/trials/{int(trial_id)}.log"
        )

    def legacy_trial_log(self, exp_id: int, trial_id: int) -> Path:
        """Where earlier builds wrote the log, in the trial's dir (``hpd logs`` reads it too)."""
        return Path(f"{self.trial_dir(exp_id, trial_id)}/output.log")

    def checkpoint_dir(self, exp_id: int, trial_id: int) -> Path:
        return Path(f"{self.trial_dir(exp_id, trial_id)}/checkpoints")


def layout(explicit: str | os.PathLike[str] | None = None) -> Layout:
    return Layout(state_dir(explicit))
