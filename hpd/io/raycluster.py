"""Ray: hpd's slots as actors on an existing Ray cluster. The only module that imports ``ray``.

The daemon stays the one scheduler and the one writer; Ray only decides where a slot's process
lives and carries its messages. Owns:

- ``Cluster``: the daemon's connection as a Ray driver (``connect``), the cluster's alive nodes,
  a probe that a checkpoint root is the same directory on every node, and slot actors.
- ``RemoteSlot``: the daemon's side of one slot actor (``hpd.trial.remote.SlotActor``, one per
  slot: one GPU, or a CPU for ``gpus_per_trial = 0``): run a segment, signal it, kill it. The
  actor's ``run`` is a streaming generator that carries the trial's requests (reports,
  checkpoints) to the daemon while the segment runs, then its answer; the daemon answers each
  request through the actor's ``reply``: the warm worker's conversation, over Ray.

Actors are not detached: Ray ends them when the daemon (their owner) dies, and a new daemon
cannot reach them anyway (their channel was the dead daemon's generator), so a crashed daemon's
segments are fenced by construction. Must never touch the database, decide what runs, or be
imported unless the daemon was started with ``--ray`` (``import hpd`` never imports ray).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from hpd.core import protocol
from hpd.errors import HpdError, RemoteError
from hpd.io.gpus import GpuInfo, sample_this_machine

RAY_MISSING = 'hpd start --ray needs Ray, which is not installed: pip install "hpd[ray]"'
NAMESPACE = "hpd"
ACTOR_CONCURRENCY = 4  # run, reply, interrupt and where() may overlap on one actor


class ClusterError(HpdError):
    """The Ray cluster cannot be used as asked (unreachable, Ray missing, no shared root)."""


class SlotLost(HpdError):
    """A slot's actor or node went away in the middle of a segment. ``node_died`` when Ray said
    so; ``unsure`` when Ray only said the actor is unreachable for now (a node that crashed
    rather than left is declared dead only after Ray's health checks, ~15 s)."""

    def __init__(self, message: str, *, node_died: bool = False, unsure: bool = False) -> None:
        super().__init__(message)
        self.node_died = node_died
        self.unsure = unsure


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ClusterError(RAY_MISSING) from None
    return ray


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    address: str
    gpus: int
    cpus: int

    @property
    def short(self) -> str:
        return self.node_id[:8]


class Cluster:
    """The daemon as a driver of one Ray cluster."""

    def __init__(self, ray: ModuleType, actor_class: type) -> None:
        self._ray = ray
        self._actor_class: Any = ray.remote(actor_class)

    @classmethod
    def connect(cls, address: str, actor_class: type, *, timeout_s: float = 10.0) -> Cluster:
        """Join the cluster at ``address`` (``auto``: the one ``ray.init`` finds by itself)."""
        ray = import_ray()
        if address != "auto":
            _check_reachable(address, timeout_s)
        try:
            ray.init(
                address=address,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level="WARNING",
                configure_logging=False,
            )
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError or ValueError
            raise ClusterError(f"--ray {address}: cannot connect to a Ray cluster: {exc}") from exc
        return cls(ray, actor_class)

    def nodes(self) -> list[Node]:
        """The alive nodes with their GPUs and CPUs (whole units, as Ray declares them)."""
        out = []
        for n in self._ray.nodes():
            if not n.get("Alive"):
                continue
            res = n.get("Resources", {})
            out.append(
                Node(
                    n["NodeID"],
                    str(n.get("NodeManagerAddress", "")),
                    int(res.get("GPU", 0)),
                    int(res.get("CPU", 0)),
                )
            )
        return sorted(out, key=lambda node: node.node_id)

    def alive(self, node_id: str) -> bool:
        return any(n.node_id == node_id for n in self.nodes())

    def slot(self, *, node_id: str, gpus: int, env: Mapping[str, str]) -> RemoteSlot:
        """A new actor on ``node_id`` (hard affinity: a slot belongs to its node) holding
        ``gpus`` GPUs (Ray sets its CUDA_VISIBLE_DEVICES), or one CPU if ``gpus`` is 0."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options: dict[str, Any] = {
            "num_gpus": gpus,
            # GPU slots hold the GPU, not a CPU: the node's CPUs stay free for CPU slots.
            "num_cpus": 0 if gpus else 1,
            "max_concurrency": ACTOR_CONCURRENCY,
            "max_restarts": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False),
        }
        actor = self._actor_class.options(**options).remote(dict(env), node_id)
        return RemoteSlot(self._ray, actor, node_id)

    def probe_shared_root(self, root: Path, nodes: list[Node], timeout_s: float = 60.0) -> None:
        """Refuse a checkpoint root that is not the same directory on every node: each node
        writes a probe file there that the daemon must read back, and reads the daemon's."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        root.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_hex(8)
        ours = root / f".hpd-probe-{nonce}"
        _write_synced(ours, nonce)
        probe = self._ray.remote(_probe_root)
        refs = {
            node: probe.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
            ).remote(str(root), nonce, node.node_id)
            for node in nodes
        }
        try:
            for node, ref in refs.items():
                _check_probe(self._ray, root, nonce, node, ref, timeout_s)
        finally:
            ours.unlink(missing_ok=True)

    def sample_gpus(self, nodes: list[Node], timeout_s: float = 5.0) -> dict[str, list[GpuInfo]]:
        """Each node's GPUs as NVML sees them there (memory, utilisation), by node id. A node
        that does not answer in time is left out (its GPUs keep their last sample)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        sample = self._ray.remote(sample_this_machine)
        refs = {
            node.node_id: sample.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
            ).remote()
            for node in nodes
            if node.gpus
        }
        ready, _ = self._ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        done = set(ready)
        out: dict[str, list[GpuInfo]] = {}
        for node_id, ref in refs.items():
            if ref in done:
                with contextlib.suppress(Exception):
                    out[node_id] = list(self._ray.get(ref))
        return out

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._ray.shutdown()


def _check_probe(
    ray: ModuleType, root: Path, nonce: str, node: Node, ref: Any, timeout_s: float
) -> None:
    where = f"node {node.short} ({node.address})"
    try:
        saw_ours = ray.get(ref, timeout=timeout_s)
    except Exception as exc:
        raise ClusterError(
            f"--checkpoint-root {root}: cannot run a probe on {where}: {exc}"
        ) from exc
    theirs = root / f".hpd-probe-{nonce}-{node.node_id}"
    try:
        readable = theirs.read_text() == nonce
    except OSError:
        readable = False
    finally:
        theirs.unlink(missing_ok=True)
    if not (saw_ours and readable):
        raise ClusterError(
            f"--checkpoint-root {root} is not shared with {where}: a file written there on one "
            "side is not visible on the other. Mount one shared filesystem at the same path on "
            "every node (NFS, a cluster filesystem) and pass it as --checkpoint-root."
        )


def _probe_root(root: str, nonce: str, node_id: str) -> bool:
    """Runs on a node: did we see the daemon's probe file? Then leave ours for it to read."""
    base = Path(root)
    try:
        saw = (base / f".hpd-probe-{nonce}").read_text() == nonce
        _write_synced(base / f".hpd-probe-{nonce}-{node_id}", nonce)
    except OSError:
        return False
    return saw


def _write_synced(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail in seconds, not minutes, on an address where no cluster listens (ray.init retries
    an unreachable GCS for a long time before it gives up)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(
            f"--ray: expected HOST:PORT of the cluster's head, or auto; got {address!r}"
        )
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"--ray {address}: no Ray cluster answers there ({exc})") from None


class RemoteSlot:
    """The daemon's handle on one slot actor."""

    def __init__(self, ray: ModuleType, actor: Any, node_id: str) -> None:
        self._ray = ray
        self.actor = actor
        self.node_id = node_id
        self.killed = False  # by us (a timeout, the grace after SIGTERM), not lost
        self._runs = itertools.count(1)

    async def ready(self) -> dict[str, Any]:
        """Wait for the actor to exist; where it runs (node, pid, GPUs)."""
        try:
            where: dict[str, Any] = await self.actor.where.remote()
        except self._ray.exceptions.RayError as exc:
            raise SlotLost(f"the slot's actor did not start: {_first_line(exc)}") from exc
        return where

    async def run(
        self, segment: dict[str, Any], answer: Callable[[protocol.Request], Awaitable[Any]]
    ) -> dict[str, Any]:
        """Run one segment: answer its requests as they come, return its answer. A trial's
        own error raises ``RemoteError``; a lost actor or node raises ``SlotLost``."""
        run_id = next(self._runs)
        try:
            async for ref in self.actor.run.remote(run_id, segment):
                msg = await ref
                if "op" in msg:
                    await self._answer(run_id, msg, answer)
                elif "error" in msg:
                    raise RemoteError("trial_error", msg["error"])
                else:
                    return dict(msg["answer"])
        except self._ray.exceptions.RayError as exc:
            text = f"{type(exc).__name__}: {_first_line(exc)}"
            raise SlotLost(
                text,
                node_died="node has died" in str(exc) or "node died" in str(exc),
                unsure=isinstance(exc, self._ray.exceptions.ActorUnavailableError),
            ) from exc
        raise SlotLost("the slot's actor ended the segment without an answer")

    async def _answer(
        self,
        run_id: int,
        msg: dict[str, Any],
        answer: Callable[[protocol.Request], Awaitable[Any]],
    ) -> None:
        req = protocol.Request(msg["op"], msg["args"], msg["id"])
        try:
            reply = (run_id, req.id, True, await answer(req), "", "")
        except HpdError as exc:
            reply = (run_id, req.id, False, None, type(exc).__name__, str(exc))
        self.actor.reply.remote(*reply)  # the trial waits for it; no need to wait for Ray's ack

    def signal(self, sig: int) -> None:
        """SIGTERM: the trial ends after its epoch in progress; SIGKILL: the actor goes."""
        import signal as signals

        if sig == signals.SIGKILL:
            self.kill()
        else:
            self.actor.interrupt.remote()

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(Exception):
            self._ray.kill(self.actor, no_restart=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else ""
