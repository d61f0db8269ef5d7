"""Peer frameworks' halves of the benchmarks; each script runs in its own venv and never imports hpd."""
