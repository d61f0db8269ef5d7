"""`python -m hpd` runs the CLI."""

from __future__ import annotations

from hpd.cli import main

main()
