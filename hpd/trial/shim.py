"""Exec shim for ``command`` trials: arm the parent-death signal, then exec the real program.

``python -m hpd.trial.shim PROGRAM ARGS...``. Owns nothing else; must stay tiny and import nothing
heavy, since it runs before every command segment.
"""

from __future__ import annotations

import os
import sys

from hpd.io.procs import exit_if_orphaned, set_parent_death_signal


def main() -> None:
    argv = sys.argv[1:]
    if not argv:
        sys.stderr.write("usage: python -m hpd.trial.shim PROGRAM [ARGS...]\n")
        raise SystemExit(2)
    set_parent_death_signal()
    exit_if_orphaned(os.environ.get("HPD_DAEMON_PID"))
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"hpd: cannot run {argv[0]!r}: {exc}\n")
        os._exit(127)


if __name__ == "__main__":
    main()
