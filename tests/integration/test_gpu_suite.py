"""bench/gpu_suite.sh --dry-run end to end, so the GPU suite cannot rot between GPU leases.

The dry run is the suite's own code at tiny sizes on the CPU: tests/gpu (skipping without a
GPU), bench/gpu.py (plain processes, then hpd searches on fake GPUs at 1 and 2 slots),
bench/subset.py (random, per-batch GradMatch, CRAIG) and the subset study (four scenarios, two
configurations each, the top 2 retrained). One test: it runs the script once (about 1.5-3 min
on 2 loaded cores) with $OUT and $TMPDIR in a temporary directory, then reads every output
file, and checks that no process the suite started (all of them inherit that $TMPDIR) is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from examples.fashion_mnist.data import default_root

REPO = Path(__file__).resolve().parents[2]
STEPS = ["setup", "tests", "gpu", "subset", "study"]
SCENARIOS = ["full50", "full25", "random", "gradmatch"]

if not (default_root() / "train-images-idx3-ubyte.gz").exists():
    pytest.skip(f"Fashion-MNIST not found under {default_root()}", allow_module_level=True)


def _ours(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (the suite's TMPDIR): ours, and only ours."""
    pids = []
    needle = marker.encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                pids.append(int(d.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def _reap(marker: str, wait_s: float = 15.0) -> list[int]:
    """Wait for the suite's processes to go; kill (and return) any still there after wait_s."""
    deadline = time.monotonic() + wait_s
    while (left := _ours(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def _json(path: Path) -> Any:
    assert path.is_file(), f"{path.name} missing"
    return json.loads(path.read_text())


@pytest.mark.timeout(360)
def test_gpu_suite_dry_run(tmp_path: Path) -> None:
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPD_")}
    env.pop("XDG_RUNTIME_DIR", None)
    env.update(OUT=str(out), TMPDIR=str(tmp))
    marker = f"TMPDIR={tmp}"
    proc = subprocess.Popen(
        ["bash", "bench/gpu_suite.sh", "--dry-run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"the dry run took over 300 s:\n{log.decode(errors='replace')[-4000:]}")
    finally:
        leftovers = _reap(marker)
    text = log.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert not leftovers, f"processes of the suite still running after it ended: {leftovers}"
    left_dirs = [p.name for p in tmp.iterdir() if p.name.startswith("hpd-")]
    assert not left_dirs, f"the suite left state or work dirs behind: {left_dirs}"

    # At most 8 files, flat: what the device tool brings back from $OUT.
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all((out / f).is_file() for f in files), files
    assert (out / "suite.log").read_text() == text  # the whole output, in order

    summary = _json(out / "summary.json")
    assert summary["dry_run"] is True and summary["failed"] is False
    assert [s["name"] for s in summary["steps"]] == STEPS
    assert all(s["rc"] == 0 and s["seconds"] >= 0 for s in summary["steps"]), summary

    # 1: the GPU tests ran and skipped cleanly (no GPU here; on a GPU box they would pass).
    assert "SKIPPED [2] tests/gpu/" in text or "2 passed" in text

    # 2: bench/gpu.py, saturated throughput and the searches at 1 and 2 slots per (fake) GPU.
    gpu = _json(out / "gpu.json")
    assert gpu["bench"] == "gpu" and gpu["device"] == "cpu"
    assert gpu["saturated"] and all(r["samples_per_s"] > 0 for r in gpu["saturated"])
    rows = gpu["search"]
    assert [r["slots_per_gpu"] for r in rows] == [1, 2]
    for r in rows:
        assert r["trials"] == 3 and r["trial_states"].get("failed", 0) == 0, r
        assert r["samples_per_s"] > 0 and r["of_saturated"] > 0, r
    assert rows[0]["over_one_slot"] is None and rows[1]["over_one_slot"] > 0

    # 3: bench/subset.py, the selection cost of each strategy against a full-data epoch.
    sub = _json(out / "subset.json")
    assert sub["bench"] == "subset"
    assert set(sub["results"]) == {"full", "random", "gradmatch_pb", "craig"}
    for name in ("random", "gradmatch_pb", "craig"):
        r = sub["results"][name]
        assert r["gradient_selections"] >= 1, r
        assert r["selection_mean_s"] >= 0 and r["selection_frac_of_full_epoch"] >= 0, r
    assert sub["micro"]["gradmatch_10pct_of_20k_s"] > 0

    # 4: the study: four scenarios searched, each one's top 2 retrained, its table and plot.
    study = _json(out / "results.json")
    assert [s["key"] for s in study["scenarios"]] == SCENARIOS
    for s in study["scenarios"]:
        assert s["search"]["state"] == "completed", s["search"]
        assert s["retrain"]["state"] == "completed" and len(s["retrain"]["rows"]) == 2
    md = (out / "results.md").read_text()
    assert "| Full data, 50 epochs |" in md and "| Grad-Match 12.5% |" in md
    if "study.png skipped" not in text:  # matplotlib is there (it is in the dev extra)
        assert (out / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
