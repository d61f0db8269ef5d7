"""Real NVML: probing, sampling and pinning. Skipped (with the reason) on machines without a GPU."""

from __future__ import annotations

import pytest

from hpd.errors import GpuError
from hpd.io import gpus


def _probe() -> gpus.NvmlProbe:
    try:
        return gpus.NvmlProbe()
    except GpuError as exc:
        pytest.skip(f"no NVIDIA GPU here: {exc}")


@pytest.mark.gpu
def test_nvml_lists_gpus_with_uuids_and_samples() -> None:
    """NVML gives each GPU a UUID, memory figures and (usually) utilisation."""
    probe = _probe()
    infos = probe.list()
    probe.close()
    assert infos
    for g in infos:
        assert g.uuid.startswith("GPU-")
        assert g.memory_total_mb > 0
        assert 0 <= g.memory_used_mb <= g.memory_total_mb


@pytest.mark.gpu
def test_lease_pins_to_the_real_uuid() -> None:
    """A lease's CUDA_VISIBLE_DEVICES is the GPU's real UUID."""
    probe = _probe()
    infos = probe.list()
    probe.close()
    table = gpus.SlotTable.build(infos, slots_per_gpu=2, cpu_slots=0)
    lease = table.acquire(1)
    assert lease is not None
    assert lease.environment()["CUDA_VISIBLE_DEVICES"] == infos[0].uuid
