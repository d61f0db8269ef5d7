"""A local multi-raylet Ray cluster for ``bench/scaling.py --ray``: a head and more nodes on
this machine, each declaring fake GPUs (Ray schedules by declared resources; no GPU needed).

Run as a script it *is* the cluster: it must run in the Ray peer's venv (``.bench-venvs/ray``),
because Ray starts every worker process with the python of the process that started the
raylets, and Ray Tune's trainables need ray[tune]'s dependencies there. hpd's slot actors run
in those same workers and import ``hpd.trial.remote``; it needs only the standard library, so
``PYTHONPATH`` on the source tree is enough (no hpd install in that venv). The script prints
one JSON line with the address, then lives until its stdin closes (or SIGTERM), and shuts the
cluster down.

Imported from hpd's venv, ``local_cluster()`` starts that script and yields the address; it
never imports ray itself.

Resources per node (defaults): 4 fake GPUs and 4 CPUs. 2 nodes x 4 GPUs = 8 GPU slots, for hpd
(one slot actor per GPU, holding no CPU) and for Ray Tune (one trial per GPU). Ray Tune's trial
also holds one CPU, so 8 concurrent trials need 8 declared CPUs: 4 per node. They are declared,
not real (this machine may have 2 cores): the work is ``time.sleep``.

    .bench-venvs/ray/bin/python bench/ray_cluster.py --nodes 2 --gpus 4 --cpus 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
RAY_PYTHON = REPO / ".bench-venvs" / "ray" / "bin" / "python"
START_S = 120.0  # two raylets on a loaded 2-core machine can take tens of seconds
STOP_S = 60.0


# == the cluster's side (in .bench-venvs/ray) ==================================================


def serve(nodes: int, gpus: int, cpus: int) -> None:
    """Start the cluster, print its address, wait for stdin to close, shut it down."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": cpus, "num_gpus": gpus, "include_dashboard": False},
    )
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=cpus, num_gpus=gpus)
        cluster.wait_for_nodes()
        print(json.dumps({"address": cluster.address, "pid": os.getpid()}), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        # stdin closing (the parent's exit, even a crash) is the other way to say stop.
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()
    finally:
        cluster.shutdown()


# == the benchmark's side (in hpd's venv) ======================================================


def available() -> bool:
    return (RAY_PYTHON.parent.parent / ".done").exists()


@contextlib.contextmanager
def local_cluster(nodes: int = 2, gpus: int = 4, cpus: int = 4) -> Iterator[str]:
    """The address (HOST:PORT) of a fresh local cluster, shut down on exit."""
    with tempfile.TemporaryDirectory(prefix="hpd-ray-") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(
            PYTHONPATH=str(REPO),  # hpd's slot actors import hpd.trial.remote from the tree
            RAY_TMPDIR=tmp,  # our sessions (and ray_current_cluster) stay out of /tmp/ray
            RAY_USAGE_STATS_ENABLED="0",
        )
        argv = [str(RAY_PYTHON), __file__, "--nodes", str(nodes), "--gpus", str(gpus)]
        argv += ["--cpus", str(cpus)]
        with open(Path(tmp) / "cluster.log", "wb+") as log:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,  # its raylets form one process group of its own
            )
            try:
                yield _read_address(proc, log)
            finally:
                _stop(proc)


def _read_address(proc: subprocess.Popen[str], log: IO[bytes]) -> str:
    assert proc.stdout is not None
    timer = threading.Timer(START_S, proc.kill)  # readline has no timeout of its own
    timer.start()
    try:
        line = proc.stdout.readline()
    finally:
        timer.cancel()
    if not line.startswith("{"):
        proc.wait()
        log.seek(0)
        tail = log.read().decode(errors="replace")[-3000:]
        raise RuntimeError(f"the Ray cluster did not start ({proc.returncode}):\n{tail}")
    return str(json.loads(line)["address"])


def _stop(proc: subprocess.Popen[str]) -> None:
    """Close stdin (the script shuts its cluster down), then make sure its group is gone."""
    with contextlib.suppress(OSError):
        assert proc.stdin is not None
        proc.stdin.close()
    try:
        proc.wait(STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    # Anything left of the group we started (a raylet that outlived the shutdown): ours alone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--gpus", type=int, default=4, help="fake GPUs per node")
    ap.add_argument("--cpus", type=int, default=4, help="CPUs declared per node")
    args = ap.parse_args()
    serve(args.nodes, args.gpus, args.cpus)


if __name__ == "__main__":
    main()
