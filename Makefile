# hpd: `make demo` runs a real search, `make test` runs the tests. Each creates what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# The CPU build of torch (local wheel on our machines); an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test test-fast check lint format typecheck bench clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install "$(TORCH)"
	$(PIP) install -e '.[dev,torch]'
	touch $@

demo: $(VENV)/.core
	$(VENV)/bin/hpd demo --state-dir .state/demo

test: $(VENV)/.dev
	$(VENV)/bin/pytest

test-fast: $(VENV)/.dev
	$(VENV)/bin/pytest tests/unit

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check hpd tui tests bench examples
	$(VENV)/bin/ruff format --check hpd tui

format: $(VENV)/.dev
	$(VENV)/bin/ruff format hpd tui tests bench examples
	$(VENV)/bin/ruff check --fix hpd tui tests bench examples

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

check: lint typecheck test

bench: $(VENV)/.dev
	$(PY) bench/segment_overhead.py
	$(PY) bench/report_throughput.py
	$(PY) bench/subset.py

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache
