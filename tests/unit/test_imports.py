"""Import hygiene: the daemon and client never load torch or textual."""

from __future__ import annotations

import subprocess
import sys


def test_daemon_and_client_stay_light() -> None:
    """`import hpd, hpd.client, hpd.daemon, hpd.trial` loads neither torch nor textual."""
    code = (
        "import sys, hpd, hpd.client, hpd.daemon, hpd.trial, hpd.cli;"
        "print(' '.join(m for m in ('torch', 'textual') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_pure_core_imports_no_io() -> None:
    """asha, spec, space and protocol import no asyncio, sqlite3, subprocess or pynvml."""
    code = (
        "import sys; before = set(sys.modules);"
        "import hpd.core.asha, hpd.core.spec, hpd.core.space, hpd.core.protocol;"
        "new = set(sys.modules) - before;"
        "print(' '.join(sorted(m for m in ('asyncio', 'sqlite3', 'aiosqlite', 'subprocess', 'pynvml') if m in new)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
