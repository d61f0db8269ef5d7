# hpd: `make demo` runs a real search, `make test` runs the tests. Each creates what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# The CPU build of torch (local wheel on our machines); an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test test-fast check lint format typecheck bench bench-peers bench-gpu-dry clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[tpe]'
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install "$(TORCH)"
	$(PIP) install -e '.[dev,torch,tpe,ray]'
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
	$(VENV)/bin/lint-imports

format: $(VENV)/.dev
	$(VENV)/bin/ruff format hpd tui tests bench examples
	$(VENV)/bin/ruff check --fix hpd tui tests bench examples

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

check: lint typecheck test

# Each benchmark prints a table and a final JSON line (appended to bench/results/*.jsonl).
bench: $(VENV)/.dev bench-peers
	$(PY) -m bench.segment_overhead --slots 1 4
	$(PY) -m bench.report_throughput
	$(PY) -m bench.peers.curve
	$(PY) -m bench.overhead --trials 256 --repeats 3
	$(PY) -m bench.scaling
	$(PY) -m bench.scaling --ray
	$(PY) -m bench.asynchrony
	$(PY) -m bench.subset
	$(PY) -m bench.gpu
	$(PY) -m bench.quality --seeds 10
	$(PY) -m bench.proposal_cost
	$(PY) -m bench.anytime --seeds 3 --seconds 40

# The GPU checks' script on the CPU (tiny sizes, fake GPUs); on a GPU: bash bench/gpu_suite.sh --wheels DIR --data DIR
bench-gpu-dry: $(VENV)/.dev
	bash bench/gpu_suite.sh --dry-run

# Optuna and Ray Tune in their own venvs (.bench-venvs/), never in hpd's.
bench-peers:
	bash bench/peers/setup.sh

clean:
	rm -rf $(VENV) .bench-venvs .state .pytest_cache .mypy_cache .ruff_cache
