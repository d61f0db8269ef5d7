"""Fake GPUs, slot tables and leases (the NVML probe itself is tested in tests/gpu)."""

from __future__ import annotations

import pytest

from hpd.errors import GpuError
from hpd.io import gpus


def test_fake_gpus_have_distinct_stable_uuids() -> None:
    """HPD_FAKE_GPUS gives N GPUs with distinct UUIDs, the same every time."""
    a, b = gpus.FakeProbe(4).list(), gpus.FakeProbe(4).list()
    assert len({g.uuid for g in a}) == 4
    assert [g.uuid for g in a] == [g.uuid for g in b]


def test_probe_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment variable wins; bad values are refused clearly."""
    monkeypatch.setenv("HPD_FAKE_GPUS", "3")
    probe = gpus.probe_from_env()
    assert probe is not None and len(probe.list()) == 3
    monkeypatch.setenv("HPD_FAKE_GPUS", "x")
    with pytest.raises(GpuError, match="HPD_FAKE_GPUS"):
        gpus.probe_from_env()


def test_slots_per_gpu_and_packing() -> None:
    """Slots = GPUs x slots-per-gpu; leases spread over GPUs before they stack."""
    table = gpus.SlotTable.build(gpus.FakeProbe(2).list(), slots_per_gpu=2, cpu_slots=1)
    leases = [table.acquire(1) for _ in range(4)]
    assert all(leases)
    first_two = {lease.gpus[0].uuid for lease in leases[:2] if lease}
    assert len(first_two) == 2
    assert table.acquire(1) is None
    assert leases[0] is not None
    table.release(leases[0])
    assert table.acquire(1) is not None


def test_lease_environment_pins_by_uuid() -> None:
    """CUDA_VISIBLE_DEVICES is the GPU's UUID, with PCI bus ordering."""
    table = gpus.SlotTable.build(gpus.FakeProbe(2).list(), slots_per_gpu=1, cpu_slots=0)
    lease = table.acquire(2)
    assert lease is not None
    env = lease.environment()
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["CUDA_VISIBLE_DEVICES"].count("GPU-") == 2


def test_min_free_memory_admission() -> None:
    """A GPU without enough free memory is skipped."""
    infos = gpus.FakeProbe(1, memory_total_mb=1000).list()
    table = gpus.SlotTable.build(infos, slots_per_gpu=1, cpu_slots=0)
    assert table.acquire(1, min_free_memory_mb=2000) is None
    assert table.acquire(1, min_free_memory_mb=500) is not None


def test_cpu_trials_and_no_gpu_fallback() -> None:
    """gpus_per_trial=0 takes CPU slots; without GPUs, GPU trials fall back to CPU slots."""
    table = gpus.SlotTable.build([], slots_per_gpu=1, cpu_slots=2)
    lease = table.acquire(1)
    assert lease is not None and lease.gpus == () and lease.environment()["CUDA_VISIBLE_DEVICES"] == ""
    assert table.acquire(0) is not None
    assert table.acquire(0) is None


def test_gpu_selection_parsing() -> None:
    """--gpus accepts auto, none or a list of indices."""
    assert gpus.parse_gpu_selection("0,2") == frozenset({0, 2})
    assert gpus.parse_gpu_selection("auto") is None
    with pytest.raises(GpuError):
        gpus.parse_gpu_selection("a,b")
