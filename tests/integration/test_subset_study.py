"""The subset-selection study (examples/subset_study) end to end at its smallest scale.

A real daemon (real socket, SQLite, fake GPUs), the four scaled searches, their full-data
retraining through the retrain API, and the report files: tiny ResNet-18 (width 4), a few
hundred Fashion-MNIST samples, 3 configurations per scenario, 2 epochs, retrain 1 epoch
(about 15 s on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from hpd.client.local import LocalDaemon

pytest.importorskip("torch")

from examples.fashion_mnist.data import default_root
from examples.subset_study.run import SCALES, SCENARIOS, main, run_study

if not (default_root() / "train-images-idx3-ubyte.gz").exists():
    pytest.skip(f"Fashion-MNIST not found under {default_root()}", allow_module_level=True)


def _acc(v: object) -> float:
    x = float(v)  # type: ignore[arg-type]  # the daemon sends numbers or "nan"/"inf"
    assert math.isfinite(x) and 0.0 <= x <= 1.0, v
    return x


def test_smoke_study_end_to_end(daemon: LocalDaemon, tmp_path: Path) -> None:
    out = tmp_path / "study"
    with daemon.client() as c:
        run_study(c, SCALES["smoke"], out, timeout_s=100)

    report = json.loads((out / "results.json").read_text())
    assert [s["key"] for s in report["scenarios"]] == [key for key, *_ in SCENARIOS]
    for s in report["scenarios"]:
        search, rt = s["search"], s["retrain"]
        assert search["state"] == "completed", search
        assert search["configurations"] == 3
        assert search["avg_config_s"] > 0
        _acc(search["best_val_acc"])
        assert rt is not None and rt["state"] == "completed", rt
        assert len(rt["rows"]) == 1  # retrain_top = 1
        for row in rt["rows"]:
            assert row["state"] == "completed"
            assert row["params"] == next(
                t["params"] for t in search["trials"] if t["id"] == row["parent_trial"]
            )
            _acc(row["value"])
            _acc(row["metrics"]["test_acc"])
        _acc(rt["test_acc"])
    by_key = {s["key"]: s for s in report["scenarios"]}
    assert by_key["full50"]["time_saved_vs_full"] == 0.0
    # GRAD-MATCH really selected (gradient passes took time); random never does.
    assert by_key["gradmatch"]["search"]["selection_s_total"] > 0
    # The same seed in all four specs: trial i has the same configuration in every scenario.
    first = {k: s["search"]["trials"][0]["params"] for k, s in by_key.items()}
    assert (
        first["full50"]
        == first["full25"]
        == first["random"]
        == {k: v for k, v in first["gradmatch"].items() if k != "lam"}
    )

    md = (out / "results.md").read_text()
    for _, label, *_ in SCENARIOS:
        assert f"| {label} | " in md
    assert "| Full data, 50 epochs | 2 | 3 |" in md  # 2 epochs at this scale, 3 configurations
    png = out / "study.png"
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not png.exists()


def test_no_daemon_and_no_start_says_how(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "no-daemon"
    args = ["--scale", "smoke", "--no-start", "--state-dir", str(state), "--out", str(tmp_path)]
    assert main(args) == 1
    assert "hpd start" in capsys.readouterr().out
