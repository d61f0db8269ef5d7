#!/usr/bin/env bash
# bench/gpu_suite.sh: the GPU checks of issue 14 in one command, sized for one lease of the
# device machine (one H200, 16 cores; under 10 minutes of device time in all).
#
#   bash bench/gpu_suite.sh --wheels .gpu-data/wheels --data .gpu-data/fashion-mnist  # GPU box
#   bash bench/gpu_suite.sh --dry-run                                                 # here
#
# Steps, in order, each bounded by its own `timeout` (SIGTERM to its whole process group, then
# SIGKILL 15 s later); a failing step does not stop the later ones:
#   0 setup   installs the carried wheels (pip --no-index --no-deps --target, nothing fetched),
#             checks the imports, prints nvidia-smi -L and what torch sees
#   1 tests   pytest tests/gpu (real NVML; on the CPU they skip, and must skip cleanly), with
#             no plugin but pytest-timeout (PYTEST_DISABLE_PLUGIN_AUTOLOAD): the device's pytest
#             has other plugins than ours, and this way both run the same
#   2 gpu     bench/gpu.py parts 1 and 2, model cnn: saturated throughput of 1, 2, 4, 8 plain
#             processes, then an hpd ASHA search at 1, 2, 4 and 8 slots per GPU; each search's
#             samples/s summed over its trials, against the saturated figure of the same run
#             ("of saturated", goal >= 0.8) and against 1 slot per GPU ("over 1 slot", goal >= 3x)
#   3 subset  bench/subset.py --device cuda --model resnet18 --amp: selection cost of random,
#             per-batch GradMatch and CRAIG, in seconds and as a fraction of a full-data epoch
#   4 study   examples/subset_study/run.py: the four scenarios (full 50/25 epochs, random 12.5%,
#             GradMatch 12.5%), 9 configurations each, the top 2 retrained; sized to what is left
# then a summary of each step's rc and seconds (stdout and summary.json); exits 1 if any failed.
#
# Outputs, flat under $OUT (default bench/results/gpu_suite/; at most 8 files, since the device
# tool brings back no more): suite.log (everything printed, in order), summary.json, gpu.json,
# subset.json (each benchmark's JSON line), and the study's results.md, results.json, study.png
# and daemon.log.
#
# Time budget on the H200 (each step's timeout; the suite's deadline, --budget, default 540 s,
# cuts a step short when less is left, so the script ends within about 9 minutes whatever
# happens). Sized from the CPU dry run (which exercises the same code at tiny sizes: ~1-3 s a
# step of plumbing, torch import ~3 s, Fashion-MNIST decode ~2 s a process) and estimates for
# the H200 (torch import + CUDA context ~5 s a process; the small CNN at batch 128 ~1-3 ms a
# step, ResNet-18 at 28x28 ~3 ms a step; a 60k-sample ResNet-18 epoch ~2-4 s):
#   setup   45 s  (expected ~10: 1.4 MB of pure-Python wheels, one `import torch`)
#   tests   60 s  (expected ~5: two NVML tests)
#   gpu    240 s  (expected ~150-210: part 1 is 4 x (10 s start + 2k + 3 s warm-up + 5 s window)
#                  ~100 s at most, stopping early once 2x the processes add < 5%; part 2 is four
#                  searches of 27 trials, 1..9 epochs of 200 steps, ~63 epochs each: ~10-40 s of
#                  training, + ~5-10 s for the warm workers' CUDA start, per search)
#   subset 120 s  (expected ~40-60: 3 epochs each of full data, random, per-batch GradMatch,
#                  CRAIG on 60k samples, select_every 1 so 2 timed selections each; a
#                  micro-benchmark on 20k)
#   study  what is left, at most 300 s (expected 60-150 at the largest size below: a warm-up
#                  search, four searches of 9 configurations, 8 retrainings, 8 trials per GPU);
#                  its size is picked from the seconds left when it starts:
#                  >= 240 s: 8 epochs, width 64, 15,000 samples, retrain 2 x 8 epochs
#                  >= 120 s: 6 epochs, width 32, 8,000 samples, retrain 2 x 6 epochs
#                  else:     4 epochs, width 16, 4,000 samples, retrain 2 x 4 epochs
#
# --dry-run (here, in CI through tests/integration/test_gpu_suite.py): no CUDA and nothing
# installed; the .venv's python (or $PYTHON), tiny sizes, the daemon on fake GPUs
# (HPD_FAKE_GPUS), tests/gpu skipping. Measured on the 2-core VM: 100-130 s at a load of 5-6
# from other jobs (setup 1.4, tests 1.6, gpu 45-65, subset 14-18, study 40-46 s): nearly all
# of it is a dozen processes importing torch and decoding Fashion-MNIST.
#
# Preparing what travels (here, in the repository root; the device reaches no registry, and
# ../shared does not travel, so both go in one ignored folder named in the run's `carry`;
# 32 MB in all, under the 64 MiB that travels with the 2 MB tree):
#   printf '/.gpu-data/\n' >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .gpu-data/wheels \
#       textual==8.2.8 mdit-py-plugins==0.7.0 platformdirs==4.14.9 \
#       linkify-it-py==2.2.0 uc-micro-py==2.0.0 rich==15.0.0 markdown-it-py==4.3.0
#   mkdir -p .gpu-data && cp -r ../shared/data/fashion-mnist .gpu-data/    # 30 MB
# The device's image already has torch, torchvision, numpy, click, pyyaml, nvidia-ml-py,
# matplotlib, pytest and pytest-timeout; hpd itself needs none of the rest (textual and its
# helpers are for the TUI; rich and markdown-it-py ride along so textual finds the
# versions it wants). pytest-asyncio is left out: tests/gpu has no async test, and the tests
# step loads no plugin but pytest-timeout (pytest only warns about the asyncio_mode option it
# does not know). Keep one version of each wheel: two stop the install.
# Then, with the device tool: run(command="bash bench/gpu_suite.sh --wheels .gpu-data/wheels
#   --data .gpu-data/fashion-mnist", carry=[".gpu-data"], timeout_s=600).

set -u -o pipefail

usage() {
    sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

ARGS=("$@")
DRY=0
WHEELS=""
DATA=""
BUDGET=""
while (($#)); do
    case $1 in
        --dry-run) DRY=1 ;;
        --wheels) WHEELS=${2:?--wheels needs a directory}; shift ;;
        --data) DATA=${2:?--data needs a directory}; shift ;;
        --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu_suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
OUT=${OUT:-$REPO/bench/results/gpu_suite}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)

# Everything printed goes to suite.log too: the script runs itself once more behind a tee, so
# that the log is complete when the script returns.
if [[ -z ${_GPU_SUITE_TEED:-} ]]; then
    rm -f "$OUT"/{suite.log,summary.json,gpu.json,subset.json,results.md,results.json,study.png,daemon.log}
    _GPU_SUITE_TEED=1 bash "${BASH_SOURCE[0]}" "${ARGS[@]}" 2>&1 | tee "$OUT/suite.log"
    exit "${PIPESTATUS[0]}"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hpd-gpu-suite.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT

if ((DRY)); then
    if [[ -n ${PYTHON:-} ]]; then PY=$PYTHON
    elif [[ -x $REPO/.venv/bin/python ]]; then PY=$REPO/.venv/bin/python
    else PY=python3; fi
    BUDGET=${BUDGET:-240}
else
    PY=${PYTHON:-python3}
    BUDGET=${BUDGET:-540}
fi
if [[ -n $DATA ]]; then
    export HPD_FASHION_MNIST
    HPD_FASHION_MNIST=$(cd "$DATA" && pwd) || exit 2
fi
# Nothing from the caller's hpd may leak in: each step starts its own daemon in a temp dir.
unset HPD_HOME HPD_FAKE_GPUS HPD_SOCKET HPD_SEGMENT HPD_DAEMON_PID
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export MPLBACKEND=Agg

START=$(date +%s)
DEADLINE=$((START + BUDGET))
NAMES=() RCS=() SECS=() LIMITS=()

# step NAME SECONDS CMD...: runs CMD under `timeout`, never past the suite's deadline.
step() {
    local name=$1 limit=$2 left t0 t1 rc
    shift 2
    left=$((DEADLINE - $(date +%s) - 5))
    ((limit > left)) && limit=$left
    echo
    echo "=== $name: $* (timeout ${limit} s; $((DEADLINE - $(date +%s))) s left of the suite's ${BUDGET})"
    t0=$(date +%s.%N)
    if ((limit < 5)); then
        echo "=== $name: not run: no time left"
        rc=125
    else
        timeout -s TERM -k 15 "$limit" "$@" </dev/null
        rc=$?
        ((rc == 124 || rc == 137)) && echo "=== $name: TIMED OUT after ${limit} s"
    fi
    t1=$(date +%s.%N)
    NAMES+=("$name") RCS+=("$rc") LIMITS+=("$limit")
    SECS+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')")
    echo "=== $name: rc $rc, ${SECS[-1]} s"
}

# The wheels go to $WORK/site, on PYTHONPATH from here on (the setup step installs them).
if [[ -n $WHEELS ]]; then
    WHEELS=$(cd "$WHEELS" && pwd) || exit 2
    export PYTHONPATH=$WORK/site:$PYTHONPATH
fi
export PY WHEELS WORK DRY

# The setup step, a script of its own so that `timeout` can run it.
cat >"$WORK/setup.sh" <<'SETUP'
set -u
if [[ -n $WHEELS ]]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --disable-pip-version-check --target "$WORK/site" "$WHEELS"/*.whl || exit 1
fi
if command -v nvidia-smi >/dev/null; then nvidia-smi -L; else echo "no nvidia-smi here"; fi
exec "$PY" - <<'EOF'
import sys

import importlib.util
import os

import click, numpy, pynvml, yaml  # noqa: F401  (what hpd and the steps need)

import hpd

print(f"python {sys.version.split()[0]} ({sys.executable}), hpd {hpd.__version__}")
if os.environ.get("DRY") == "1":  # spare the dry run an import of torch (seconds on 2 cores)
    print(f"torch: {'found' if importlib.util.find_spec('torch') else 'MISSING'}")
else:
    import torch

    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    if not torch.cuda.is_available():
        sys.exit("setup: torch sees no CUDA device: the GPU steps will fail or skip")
    print(f"GPU: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}")
try:
    import textual

    print(f"textual {textual.__version__}")
except ImportError as exc:  # the TUI only: nothing below needs it
    print(f"textual missing ({exc}): the TUI would not start")
EOF
SETUP

# expect FILE: the last step fails if it wrote no FILE (bench/gpu.py exits 0 when it skips).
expect() {
    if [[ ! -s $OUT/$1 ]] && ((RCS[-1] == 0)); then
        echo "=== ${NAMES[-1]}: no $1 written: counted as failed"
        RCS[-1]=1
    fi
}

# The study's size for the seconds it has (see the top of this file).
study_args() {
    local left=$1
    if ((DRY)); then
        echo --scale smoke --retrain-top 2 --device cpu --slots-per-gpu 2 --configs 2
    elif ((left >= 240)); then
        echo --scale gpu --configs 9 --epochs 8 --retrain-top 2 --retrain-epochs 8 --width 64 \
            --train-samples 15000 --device cuda --slots-per-gpu 8
    elif ((left >= 120)); then
        echo --scale gpu --configs 9 --epochs 6 --retrain-top 2 --retrain-epochs 6 --width 32 \
            --train-samples 8000 --device cuda --slots-per-gpu 8
    else
        echo --scale gpu --configs 9 --epochs 4 --retrain-top 2 --retrain-epochs 4 --width 16 \
            --train-samples 4000 --device cuda --slots-per-gpu 8
    fi
}

echo "gpu_suite.sh: $( ((DRY)) && echo "DRY RUN (CPU, tiny sizes, fake GPUs)" || echo "GPU run") in $REPO"
echo "python: $PY; out: $OUT; budget: $BUDGET s; $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"

if ((DRY)); then
    step setup 20 bash "$WORK/setup.sh"
    step tests 60 env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$PY" -m pytest -p pytest_timeout \
        -p no:cacheprovider -q -rs tests/gpu
    step gpu 100 "$PY" -m bench.gpu --device cpu --fake-gpus 1 --parts 1 2 --models cnn \
        --batch 16 --processes 1 --start-delay 0 --warmup 0.2 --window 0.5 \
        --slots-per-gpu 1 2 --trials 3 --max-epochs 1 --steps-per-epoch 2 --out "$OUT/gpu.json"
    expect gpu.json
    step subset 60 "$PY" bench/subset.py --device cpu --model mlp --epochs 2 --select-every 1 \
        --train-limit 1000 --test-limit 500 --batch-size 64 --threads 1 \
        --strategies full,random,gradmatch_pb,craig --out "$OUT/subset.json"
    expect subset.json
    left=$((DEADLINE - $(date +%s) - 5))
    # shellcheck disable=SC2046  # study_args is a list of words
    step study 120 env HPD_FAKE_GPUS=1 "$PY" -m examples.subset_study.run $(study_args "$left") \
        --state-dir "$WORK/no-daemon" --out "$OUT"
    expect results.json
else
    step setup 45 bash "$WORK/setup.sh"
    step tests 60 env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "$PY" -m pytest -p pytest_timeout \
        -p no:cacheprovider -q -rs tests/gpu
    step gpu 240 "$PY" -m bench.gpu --parts 1 2 --models cnn --batch 128 \
        --processes 1 2 4 8 --start-delay 10 --warmup 3 --window 5 \
        --slots-per-gpu 1 2 4 8 --trials 27 --max-epochs 9 --out "$OUT/gpu.json"
    expect gpu.json
    step subset 120 "$PY" bench/subset.py --device cuda --model resnet18 --amp --epochs 3 \
        --select-every 1 --threads 8 --strategies full,random,gradmatch_pb,craig \
        --out "$OUT/subset.json"
    expect subset.json
    left=$((DEADLINE - $(date +%s) - 5))
    # shellcheck disable=SC2046
    step study 300 "$PY" -m examples.subset_study.run $(study_args "$left") \
        --state-dir "$WORK/no-daemon" --out "$OUT"
    expect results.json
fi

# The summary: a table here, summary.json beside the outputs.
echo
echo "=== summary ($(($(date +%s) - START)) s in all, budget $BUDGET s)"
printf '%-8s %5s %8s %8s\n' step rc seconds timeout
failed=0
json='{"dry_run": '$( ((DRY)) && echo true || echo false)', "budget_s": '$BUDGET', "steps": ['
for i in "${!NAMES[@]}"; do
    printf '%-8s %5s %8s %8s\n' "${NAMES[i]}" "${RCS[i]}" "${SECS[i]}" "${LIMITS[i]}"
    ((RCS[i] != 0)) && failed=1
    ((i)) && json+=', '
    json+='{"name": "'${NAMES[i]}'", "rc": '${RCS[i]}', "seconds": '${SECS[i]}', "timeout_s": '${LIMITS[i]}'}'
done
json+='], "total_s": '$(($(date +%s) - START))', "failed": '$( ((failed)) && echo true || echo false)'}'
echo "$json" >"$OUT/summary.json"
echo "outputs in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
((failed)) && echo "gpu_suite.sh: a step failed (see above)"
exit "$failed"
