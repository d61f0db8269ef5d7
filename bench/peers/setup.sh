#!/usr/bin/env bash
# Creates the peers' own virtual environments for bench/overhead.py and bench/scaling.py:
#   .bench-venvs/optuna  (optuna==5.0.0)
#   .bench-venvs/ray     (ray[tune]==2.60.0, optuna==5.0.0 for its OptunaSearch)
# The peer scripts never import hpd; each runs in its own venv. Idempotent (a stamp per venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
ROOT=.bench-venvs
mkdir -p "$ROOT"

make_venv() {  # name, pip args...
    local name=$1; shift
    local dir=$ROOT/$name
    if [[ -f $dir/.done ]]; then echo "$dir: ready"; return; fi
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip --disable-pip-version-check -q install "$@"
    touch "$dir/.done"
    echo "$dir: installed $*"
}

which=${1:-all}
if [[ $which == all || $which == optuna ]]; then make_venv optuna "optuna==5.0.0"; fi
if [[ $which == all || $which == ray ]]; then make_venv ray "ray[tune]==2.60.0" "optuna==5.0.0"; fi  # optuna: OptunaSearch
