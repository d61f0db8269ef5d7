"""GPUs: the only module that talks to NVML (``pynvml``, from the nvidia-ml-py package).

Owns the probe (real NVML or ``HPD_FAKE_GPUS=N`` fakes), the slot table (GPU x index, or CPU
slots) and leases of slots to trials, plus the environment that pins a trial to its GPUs.
Must never spawn processes or touch the database. NVML calls block, so the daemon runs
``sample()`` in a thread.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hpd.errors import GpuError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as NVML sees it; ``None`` where NVML says 'not supported'."""

    index: int
    uuid: str
    name: str
    memory_total_mb: int
    memory_used_mb: int
    utilization: int | None
    machine: str = ""  # the Ray node it is on (hpd start --ray); "" = this machine

    @property
    def memory_free_mb(self) -> int:
        return self.memory_total_mb - self.memory_used_mb


class GpuProbe(Protocol):
    def list(self) -> list[GpuInfo]: ...

    def close(self) -> None: ...


class NvmlProbe:
    """Real GPUs through NVML. Constructing it initialises NVML; raises GpuError without it."""

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a core dependency
            raise GpuError("nvidia-ml-py is not installed") from exc
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise GpuError(f"NVML is not available: {exc}") from exc

    def list(self) -> list[GpuInfo]:
        nv = self._nvml
        out = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            try:
                util: int | None = int(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            except nv.NVMLError:
                util = None
            out.append(
                GpuInfo(
                    index=i,
                    uuid=_text(nv.nvmlDeviceGetUUID(h)),
                    name=_text(nv.nvmlDeviceGetName(h)),
                    memory_total_mb=int(mem.total) // (1 << 20),
                    memory_used_mb=int(mem.used) // (1 << 20),
                    utilization=util,
                )
            )
        return out

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # pragma: no cover - shutdown errors are irrelevant at exit
            logger.debug("nvmlShutdown failed", exc_info=True)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FakeProbe:
    """N fake GPUs with distinct, stable UUIDs; memory use follows the leases the daemon reports."""

    def __init__(self, count: int, memory_total_mb: int = 81559) -> None:
        self._gpus = [
            GpuInfo(
                index=i,
                uuid=f"GPU-{uuid.uuid5(uuid.NAMESPACE_OID, f'hpd-fake-{i}')}",
                name="Fake GPU",
                memory_total_mb=memory_total_mb,
                memory_used_mb=0,
                utilization=0,
            )
            for i in range(count)
        ]
        self.busy: dict[str, int] = {}  # uuid -> leased slots, set by the slot table

    def list(self) -> list[GpuInfo]:
        out = []
        for g in self._gpus:
            n = self.busy.get(g.uuid, 0)
            # Pretend each busy slot uses a fixed share so the UI has something honest to draw.
            out.append(
                GpuInfo(
                    g.index,
                    g.uuid,
                    g.name,
                    g.memory_total_mb,
                    min(g.memory_total_mb, 512 * n),
                    min(100, 100 * n),
                )
            )
        return out

    def close(self) -> None:
        pass


def probe_from_env(gpus: str = "auto") -> GpuProbe | None:
    """The probe for ``--gpus``: auto (NVML if present), none, or a comma list of indices.

    ``HPD_FAKE_GPUS=N`` in the environment replaces NVML with N fakes.
    """
    fake = os.environ.get("HPD_FAKE_GPUS")
    if fake:
        try:
            n = int(fake)
        except ValueError as exc:
            raise GpuError(f"HPD_FAKE_GPUS must be an integer, got {fake!r}") from exc
        if not 0 <= n <= 64:
            raise GpuError(f"HPD_FAKE_GPUS must be in 0..64, got {n}")
        return FakeProbe(n) if n else None
    if gpus == "none":
        return None
    try:
        return NvmlProbe()
    except GpuError as exc:
        if gpus != "auto":
            raise
        logger.info("no GPUs: %s", exc)
        return None


def sample_this_machine() -> list[GpuInfo]:
    """This machine's GPUs now (NVML, or ``HPD_FAKE_GPUS``'s fakes); [] without any. Run on a
    Ray node by the daemon's GPU sampling (``hpd.io.raycluster``)."""
    try:
        probe = probe_from_env("auto")
    except GpuError:
        return []
    if probe is None:
        return []
    try:
        return probe.list()
    finally:
        probe.close()


def parse_gpu_selection(gpus: str) -> frozenset[int] | None:
    """``auto``/``none`` -> None; ``0,2`` -> {0, 2}."""
    if gpus in ("auto", "none"):
        return None
    try:
        chosen = frozenset(int(x) for x in gpus.split(",") if x.strip())
    except ValueError as exc:
        raise GpuError(f"--gpus must be auto, none or a list like 0,2; got {gpus!r}") from exc
    if not chosen or min(chosen) < 0:
        raise GpuError(f"--gpus must name GPU indices >= 0, got {gpus!r}")
    return chosen


@dataclass(frozen=True, slots=True)
class Slot:
    """A place to run one trial segment: (GPU, index) or a CPU slot (gpu is None)."""

    gpu: GpuInfo | None
    index: int

    @property
    def name(self) -> str:
        return f"gpu{self.gpu.index}:{self.index}" if self.gpu else f"cpu:{self.index}"


@dataclass(frozen=True, slots=True)
class Lease:
    slots: tuple[Slot, ...]

    @property
    def gpus(self) -> tuple[GpuInfo, ...]:
        return tuple(s.gpu for s in self.slots if s.gpu is not None)

    @property
    def label(self) -> str:
        return ",".join(s.name for s in self.slots)

    def environment(self) -> dict[str, str]:
        """Pins the trial: CUDA_VISIBLE_DEVICES by UUID (stable under reordering)."""
        return {
            "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": ",".join(g.uuid for g in self.gpus),
        }


def _distinct_gpus(
    slots: list[Slot], n: int, min_free_memory_mb: int, samples: dict[str, GpuInfo]
) -> list[Slot] | None:
    """``n`` of ``slots`` on distinct GPUs with enough free memory, in order; or None."""
    chosen: list[Slot] = []
    used: set[str] = set()
    for s in slots:
        assert s.gpu is not None
        if s.gpu.uuid in used:
            continue
        info = samples.get(s.gpu.uuid, s.gpu)
        # A total of 0 is unknown (a Ray node's GPU, not sampled): nothing to hold against it.
        if info.memory_total_mb and info.memory_free_mb < min_free_memory_mb:
            continue
        chosen.append(s)
        used.add(s.gpu.uuid)
        if len(chosen) == n:
            return chosen
    return None


@dataclass
class SlotTable:
    """Which slots exist and which are leased. Not thread-safe; the daemon loop owns it."""

    gpu_slots: list[Slot]
    cpu_slots: list[Slot]
    free: set[Slot] = field(default_factory=set)
    retired: set[Slot] = field(default_factory=set)  # gone with their node: never leased again

    @classmethod
    def build(
        cls,
        gpus: Sequence[GpuInfo],
        *,
        slots_per_gpu: int,
        cpu_slots: int,
    ) -> SlotTable:
        if slots_per_gpu < 1:
            raise GpuError(f"--slots-per-gpu must be >= 1, got {slots_per_gpu}")
        if cpu_slots < 0:
            raise GpuError(f"--cpu-slots must be >= 0, got {cpu_slots}")
        g = [Slot(gpu, i) for gpu in gpus for i in range(slots_per_gpu)]
        c = [Slot(None, i) for i in range(cpu_slots)]
        return cls(g, c, set(g) | set(c))

    @property
    def has_gpus(self) -> bool:
        return bool(self.gpu_slots)

    def acquire(
        self,
        gpus_per_trial: int,
        *,
        min_free_memory_mb: int = 0,
        samples: dict[str, GpuInfo] | None = None,
    ) -> Lease | None:
        """A lease of free slots, one per GPU on distinct GPUs, or None if none fits now.

        With no GPUs at all, GPU trials fall back to CPU slots (so a laptop still runs them).
        """
        if gpus_per_trial == 0 or not self.has_gpus:
            for s in self.cpu_slots:
                if s in self.free:
                    self.free.discard(s)
                    return Lease((s,))
            return None
        # Fill the least-loaded GPU first so packing spreads before it stacks.
        candidates = sorted(self._free_gpu_slots(), key=self._load_key)
        # A lease's GPUs are on one machine (a Ray node): a process cannot span two.
        machines: dict[str, list[Slot]] = {}
        for s in candidates:
            assert s.gpu is not None
            machines.setdefault(s.gpu.machine, []).append(s)
        for group in machines.values():
            chosen = _distinct_gpus(group, gpus_per_trial, min_free_memory_mb, samples or {})
            if chosen:
                self.free.difference_update(chosen)
                return Lease(tuple(chosen))
        return None

    def release(self, lease: Lease) -> None:
        self.free.update(lease.slots)
        if self.retired:
            self.free -= self.retired

    def add(self, slots: Sequence[Slot]) -> None:
        """New slots (a node joined the cluster), free from now on."""
        for s in slots:
            (self.gpu_slots if s.gpu is not None else self.cpu_slots).append(s)
            self.retired.discard(s)
            self.free.add(s)

    def retire(self, slots: Sequence[Slot]) -> None:
        """Slots that no longer exist (their node left): a leased one is not given back."""
        gone = set(slots)
        self.gpu_slots = [s for s in self.gpu_slots if s not in gone]
        self.cpu_slots = [s for s in self.cpu_slots if s not in gone]
        self.free -= gone
        self.retired |= gone

    def busy_by_gpu(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.gpu_slots:
            if s not in self.free and s.gpu is not None:
                out[s.gpu.uuid] = out.get(s.gpu.uuid, 0) + 1
        return out

    def _free_gpu_slots(self) -> list[Slot]:
        return [s for s in self.gpu_slots if s in self.free]

    def _load_key(self, slot: Slot) -> tuple[int, int, int]:
        assert slot.gpu is not None
        busy = self.busy_by_gpu().get(slot.gpu.uuid, 0)
        return (busy, slot.gpu.index, slot.index)
