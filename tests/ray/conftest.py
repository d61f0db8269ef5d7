"""A local Ray cluster for the Ray backend's tests: raylets on this machine with fake GPUs
declared (Ray schedules by declared resources, so no GPU is needed), and hpd daemons started
with ``--ray`` against it. Skipped where the ``hpd[ray]`` extra is not installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from hpd.client.local import LocalDaemon

ray_cluster_utils = pytest.importorskip("ray.cluster_utils", reason="needs the hpd[ray] extra")

GPUS_PER_NODE = 4


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and one more node, each with 4 fake GPUs and 1 CPU. Their raylets (and so every
    worker) see HPD_FAKE_GPUS=4, so that sampling a node's GPUs finds 4 fakes, as NVML would
    find its real ones; the test process's own environment is left as it was."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    saved = os.environ.get("HPD_FAKE_GPUS")
    os.environ["HPD_FAKE_GPUS"] = str(GPUS_PER_NODE)
    try:
        c = ray_cluster_utils.Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "num_gpus": GPUS_PER_NODE, "include_dashboard": False},
        )
        c.add_node(num_cpus=1, num_gpus=GPUS_PER_NODE)
        c.wait_for_nodes()
    finally:
        if saved is None:
            os.environ.pop("HPD_FAKE_GPUS", None)
        else:
            os.environ["HPD_FAKE_GPUS"] = saved
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def ray_daemon(cluster: Any, daemon_factory: Any) -> Any:
    """``daemon_factory``'s daemons, started with ``--ray`` on the local cluster."""

    def make(*args: str, **env: str) -> LocalDaemon:
        ray_args = ["--ray", cluster.address, "--cpu-slots", "1", "--grace", "5", *args]
        return daemon_factory(  # type: ignore[no-any-return]
            fake_gpus=0, args=ray_args, RAY_USAGE_STATS_ENABLED="0", **env
        )

    return make


def slot_actor_pids() -> list[int]:
    """The processes of live slot actors on this machine (Ray names them ray::SlotActor)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::SlotActor"):
                    found.append(int(entry))
        except OSError:
            continue
    return found
