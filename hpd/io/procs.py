"""Process identity and containment helpers shared by the daemon and the trial shims.

Owns: reading a process's start time and the boot id from /proc (so a recorded pgid can be
proven to be ours before it is killed, defeating PID reuse), and setting the parent-death
signal. Must never decide what to kill; callers do.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

PR_SET_PDEATHSIG = 1


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def is_same_process(pid: int, ticks: int | None, boot: str | None) -> bool:
    return ticks is not None and boot == boot_id() and start_ticks(pid) == ticks


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux only; no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def exit_if_orphaned(expected_parent: str | None) -> None:
    # The parent may have died before the death signal was armed: then nobody would kill us.
    if expected_parent and expected_parent.isdigit() and os.getppid() != int(expected_parent):
        os._exit(1)
