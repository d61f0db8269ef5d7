"""Shared fixtures: a real daemon (real socket, real SQLite file, fake GPUs) in a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpd.client.local import LocalDaemon

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[LocalDaemon] = []

    def make(fake_gpus: int = 4, args: list[str] | None = None, **env: str) -> LocalDaemon:
        state = tmp_path / f"state{len(made)}"
        d = LocalDaemon(
            state,
            fake_gpus=fake_gpus,
            args=args if args is not None else ["--cpu-slots", "2", "--grace", "5"],
            extra_env={"PYTHONPATH": str(REPO), **env},
            log=tmp_path / "daemon.out",
            cwd=REPO,
        )
        made.append(d)
        return d

    yield make
    for d in made:
        if d.alive():
            d.kill()


@pytest.fixture
def daemon(daemon_factory: Any) -> LocalDaemon:
    return daemon_factory().start()  # type: ignore[no-any-return]


def synthetic_spec(**over: Any) -> dict[str, Any]:
    """The synthetic search as a dict; keyword arguments override top-level tables/keys."""
    spec: dict[str, Any] = {
        "name": "synthetic",
        "metric": "loss",
        "mode": "min",
        "seed": 0,
        "entrypoint": "examples.synthetic.train:train",
        "workdir": str(REPO),
        "searcher": {"name": "asha", "max_trials": 27, "min_resource": 1, "max_resource": 9, "eta": 3},
        "space": {
            "lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
            "momentum": {"type": "uniform", "low": 0.0, "high": 1.0},
        },
        "resources": {"gpus_per_trial": 1, "max_concurrent": 4},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        elif value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec
