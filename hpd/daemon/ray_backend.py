"""Segments on a Ray cluster (``hpd start --ray``): the slot table from the cluster's nodes, and a
``Launcher`` whose slots are Ray actors.

The engine, the ladder, the store and every handler are the same as on one machine; only where
a segment runs changes. A slot is one GPU of one node (``--slots-per-gpu`` of them per GPU), or
one CPU of a node for ``gpus_per_trial = 0`` trials; each slot's actor is created on its node
when first needed and kept warm. ``watch_nodes`` follows nodes joining and leaving and samples
their GPUs. A segment
whose node left the cluster ends as *lost* (requeued from its last registered checkpoint, no
restart counted); an actor that died on a live node is a crash of the trial, as a dead warm
worker is on one machine. Must never touch the store or import ray (``hpd.io.raycluster``
does).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpd.core.experiment import Experiment
from hpd.daemon.ports import Prepared, Started
from hpd.daemon.router import Handler
from hpd.daemon.state import Running, Slots
from hpd.daemon.workers import Launch, Outcome
from hpd.errors import RemoteError
from hpd.io import gpus
from hpd.io.raycluster import Cluster, ClusterError, Node, RemoteSlot, SlotLost

logger = logging.getLogger(__name__)

NODE_POLL_S = 2.0
UNSURE_WAIT_S = 30.0  # Ray declares a crashed node dead after ~15 s of missed health checks
ACTOR_ENV = {"PYTHONUNBUFFERED": "1"}


@dataclass
class NodeSlots:
    """Which node each slot lives on, and the slots of each node."""

    node_of: dict[gpus.Slot, Node] = field(default_factory=dict)
    next_gpu_index: int = 0
    next_cpu_index: int = 0

    def of(self, node_id: str) -> list[gpus.Slot]:
        return [s for s, n in self.node_of.items() if n.node_id == node_id]

    def make(self, node: Node, *, slots_per_gpu: int, cpu_slots: int) -> list[gpus.Slot]:
        """The slots of a node: ``slots_per_gpu`` per GPU, and ``cpu_slots`` CPU slots."""
        made = []
        for j in range(node.gpus):
            info = gpus.GpuInfo(
                self.next_gpu_index,
                f"ray-{node.node_id}-{j}",
                f"{node.address} GPU {j}",
                0,
                0,
                None,
                machine=node.node_id,
            )
            self.next_gpu_index += 1
            made += [gpus.Slot(info, i) for i in range(slots_per_gpu)]
        for _ in range(cpu_slots):
            made.append(gpus.Slot(None, self.next_cpu_index))
            self.next_cpu_index += 1
        for s in made:
            self.node_of[s] = node
        return made


def join(
    address: str, checkpoint_root: Path, *, slots_per_gpu: int, cpu_slots: int
) -> tuple[Cluster, Slots, NodeSlots]:
    """Connect as a driver, verify that every node shares ``checkpoint_root``, and lay out
    the slots of the nodes alive now. Blocking (the daemon runs it on a thread)."""
    from hpd.trial.remote import SlotActor

    cluster = Cluster.connect(address, SlotActor)
    try:
        nodes = cluster.nodes()
        if not nodes:
            raise ClusterError(f"--ray {address}: the cluster has no alive node")
        cluster.probe_shared_root(checkpoint_root, nodes)
        slots, placed = build_slots(nodes, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots)
    except BaseException:
        cluster.shutdown()
        raise
    logger.info(
        "ray cluster %s: %d nodes, %d slots, checkpoint root %s",
        address,
        len(nodes),
        len(slots.table.free),
        checkpoint_root,
    )
    return cluster, slots, placed


def cpu_slots_of(node: Node, cpu_slots: int) -> int:
    """``--cpu-slots`` per node (0: one per CPU the node declares)."""
    return cpu_slots if cpu_slots > 0 else node.cpus


def build_slots(
    cluster_nodes: Sequence[Node], *, slots_per_gpu: int, cpu_slots: int
) -> tuple[Slots, NodeSlots]:
    placed = NodeSlots()
    made = [
        s
        for n in cluster_nodes
        for s in placed.make(n, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots_of(n, cpu_slots))
    ]
    table = gpus.SlotTable.build([], slots_per_gpu=1, cpu_slots=0)
    table.add(made)
    return Slots(table, _samples(placed), _labels(placed)), placed


def _samples(placed: NodeSlots) -> dict[str, gpus.GpuInfo]:
    return {s.gpu.uuid: s.gpu for s in placed.node_of if s.gpu is not None}


def _labels(placed: NodeSlots) -> dict[str, str]:
    return {s.name: f"{n.short} {n.address}" for s, n in placed.node_of.items()}


async def watch_nodes(
    cluster: Cluster,
    slots: Slots,
    placed: NodeSlots,
    *,
    slots_per_gpu: int,
    cpu_slots: int,
    on_change: Callable[[], None],
) -> None:
    """Follow the cluster: a node that joins brings its slots, one that leaves takes them; and
    sample every node's GPUs (memory, utilisation) for the UI and ``min_free_memory_mb``."""
    while True:
        await asyncio.sleep(NODE_POLL_S)
        try:
            nodes = await asyncio.to_thread(cluster.nodes)
        except Exception:
            logger.warning("cannot list the cluster's nodes", exc_info=True)
            continue
        if _follow(nodes, slots, placed, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots):
            on_change()
        try:
            sampled = await asyncio.to_thread(cluster.sample_gpus, nodes)
        except Exception:
            logger.warning("cannot sample the cluster's GPUs", exc_info=True)
            continue
        slots.samples.update(_sampled(placed, sampled))


def _follow(
    nodes: Sequence[Node], slots: Slots, placed: NodeSlots, *, slots_per_gpu: int, cpu_slots: int
) -> bool:
    """Retire the slots of nodes that left, add those of nodes that joined; any change?"""
    known = {n.node_id for n in placed.node_of.values()}
    alive = {n.node_id: n for n in nodes}
    for node_id in known - alive.keys():
        gone = placed.of(node_id)
        slots.table.retire(gone)
        for s in gone:
            del placed.node_of[s]
        logger.warning("node %s left the cluster: %d slots retired", node_id[:8], len(gone))
    for node_id in alive.keys() - known:
        node = alive[node_id]
        new = placed.make(
            node, slots_per_gpu=slots_per_gpu, cpu_slots=cpu_slots_of(node, cpu_slots)
        )
        slots.table.add(new)
        logger.info("node %s joined the cluster: %d slots", node.short, len(new))
    if alive.keys() == known:
        return False
    slots.samples = _samples(placed)
    slots.nodes = _labels(placed)
    return True


def _sampled(placed: NodeSlots, sampled: dict[str, list[gpus.GpuInfo]]) -> dict[str, gpus.GpuInfo]:
    """Our GPU j of a node gets that node's NVML GPU j's memory and utilisation (Ray numbers
    a node's GPUs as NVML does when the raylet sees them all)."""
    ours: dict[str, dict[int, gpus.GpuInfo]] = {}
    for slot, node in placed.node_of.items():
        if slot.gpu is not None:
            j = int(slot.gpu.uuid.rsplit("-", 1)[1])
            ours.setdefault(node.node_id, {})[j] = slot.gpu
    out = {}
    for node_id, seen in sampled.items():
        mine = ours.get(node_id, {})
        for j, info in enumerate(sorted(seen, key=lambda g: g.index)):
            if j in mine:
                out[mine[j].uuid] = dataclasses.replace(
                    mine[j],
                    memory_total_mb=info.memory_total_mb,
                    memory_used_mb=info.memory_used_mb,
                    utilization=info.utilization,
                )
    return out


class RayLauncher:
    """Each lease's segment on the actor of its slot (created on its node, kept warm)."""

    def __init__(self, cluster: Cluster, placed: NodeSlots, handler: Handler) -> None:
        self._cluster = cluster
        self._placed = placed
        self._handler = handler  # answers what a trial asks mid-segment
        self._actors: dict[str, RemoteSlot] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def prepare(self, exp: Experiment, lease: gpus.Lease) -> Prepared:
        # No identity: the actor's process is Ray's to end (it dies with this daemon, its owner).
        return Prepared(None, await self._actor(lease))

    async def run(
        self, run: Running, launch: Launch, prepared: Prepared, started: Started
    ) -> Outcome:
        slot = prepared.worker
        assert isinstance(slot, RemoteSlot)
        run.proc = slot
        try:
            end = await slot.run(_segment(launch), self._handler)
        except RemoteError as exc:
            return Outcome("crashed", str(exc))
        except SlotLost as exc:
            return await self._lost(slot, exc)
        return Outcome.answered(end)

    async def _lost(self, slot: RemoteSlot, exc: SlotLost) -> Outcome:
        if slot.killed:
            return Outcome("crashed", f"killed ({exc})", worker_died=True)
        slot.kill()  # an unreachable actor must not come back and run on unnoticed
        if exc.node_died or not await self._node_alive(slot.node_id, wait=exc.unsure):
            why = f"node {slot.node_id[:8]} left the cluster ({exc})"
            return Outcome("lost", why, worker_died=True)
        return Outcome("crashed", f"the slot's actor died: {exc}", worker_died=True)

    async def _node_alive(self, node_id: str, *, wait: bool) -> bool:
        """Is the node alive? When Ray is unsure, give its health checks time to decide."""
        deadline = asyncio.get_running_loop().time() + (UNSURE_WAIT_S if wait else 0)
        while True:
            alive = await asyncio.to_thread(self._cluster.alive, node_id)
            if not alive or asyncio.get_running_loop().time() >= deadline:
                return alive
            await asyncio.sleep(1.0)

    async def prewarm(self, exp: Experiment, leases: Sequence[gpus.Lease]) -> None:
        # All at once: Ray starts the actors' processes in parallel, node by node. A failure
        # here is retried at launch.
        await asyncio.gather(*(self._actor(lease) for lease in leases), return_exceptions=True)

    def discard(self, lease: gpus.Lease) -> None:
        slot = self._actors.pop(lease.label, None)
        if slot is not None:
            slot.kill()

    async def close(self) -> None:
        actors, self._actors = list(self._actors.values()), {}
        for slot in actors:
            slot.kill()
        await asyncio.to_thread(self._cluster.shutdown)

    async def _actor(self, lease: gpus.Lease) -> RemoteSlot:
        key = lease.label
        slot = self._actors.get(key)
        if slot is not None:
            return slot
        async with self._locks.setdefault(key, asyncio.Lock()):
            slot = self._actors.get(key)
            if slot is None:
                node = self._placed.node_of.get(lease.slots[0])
                if node is None:
                    raise SlotLost(f"slot {key}: its node left the cluster")
                slot = self._cluster.slot(node_id=node.node_id, gpus=len(lease.gpus), env=ACTOR_ENV)
                await slot.ready()
                self._actors[key] = slot
            return slot


def _segment(launch: Launch) -> dict[str, object]:
    """What the actor needs to run the segment (as a warm worker's 'run', or a command's)."""
    if launch.command:
        return {
            "command": list(launch.command),
            "process_env": launch.env,
            "segment": launch.segment,
            "log": str(launch.log_path),
            "workdir": launch.cwd,
            "header": launch.header,
        }
    return launch.warm_args()
