"""Import hygiene: the daemon and client never load torch or textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_daemon_and_client_stay_light() -> None:
    """`import hpd, hpd.client, hpd.daemon, hpd.trial` loads neither torch nor textual."""
    code = (
        "import sys, hpd, hpd.client, hpd.daemon, hpd.trial, hpd.cli;"
        "print(' '.join(m for m in ('torch', 'textual', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_pure_core_imports_no_io() -> None:
    """The core, imported, loads no asyncio, sqlite3, subprocess or pynvml (at run time, too)."""
    code = (
        "import sys; before = set(sys.modules);"
        "import hpd.core.asha, hpd.core.spec, hpd.core.space, hpd.core.protocol, hpd.core.events,"
        " hpd.core.records, hpd.core.lifecycle, hpd.core.ranking, hpd.core.views, hpd.core.retrain,"
        " hpd.core.experiment, hpd.core.numbers;"
        "new = set(sys.modules) - before;"
        "print(' '.join(sorted(m for m in ('asyncio', 'sqlite3', 'subprocess', 'pynvml') if m in new)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_import_contracts_hold() -> None:
    """The layers and the one-module-per-foreign-system rules (``[tool.importlinter]``)."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("lint-imports is missing: pip install -e '.[dev]' (import-linter)")
    out = subprocess.run(
        [str(lint), "--no-cache"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout
