"""The checkpoint root's probe (``Cluster.probe_shared_root``): a root that a node does not
share refuses the start with a message naming that node. On one machine every raylet shares
every directory, so the node's side runs here against a directory of its own, as it would on
a node that mounts something else at the same path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hpd.io.raycluster import Cluster, ClusterError, Node


class _Task:
    """A Ray remote function, run at once; ``root`` is what the node sees at the same path."""

    def __init__(self, fn: Any, root: Path | None) -> None:
        self._fn, self._root = fn, root

    def options(self, **_: Any) -> _Task:
        return self

    def remote(self, root: str, nonce: str, node_id: str) -> bool:
        return bool(self._fn(str(self._root or root), nonce, node_id))


class _FakeRay:
    def __init__(self, node_root: Path | None) -> None:
        self._node_root = node_root

    def remote(self, fn: Any) -> _Task:
        return _Task(fn, self._node_root)

    def get(self, ref: bool, timeout: float) -> bool:
        return ref


def _cluster(node_root: Path | None) -> Cluster:
    cluster = Cluster.__new__(Cluster)
    cluster._ray = _FakeRay(node_root)  # type: ignore[assignment]
    return cluster


NODE = Node("ab" * 28, "10.0.0.7", 4, 8)


def test_a_shared_root_passes_and_leaves_no_probe_files(tmp_path: Path) -> None:
    pytest.importorskip("ray.util.scheduling_strategies")
    _cluster(None).probe_shared_root(tmp_path, [NODE])
    assert list(tmp_path.iterdir()) == []


def test_a_root_the_node_does_not_share_is_refused_naming_the_node(tmp_path: Path) -> None:
    pytest.importorskip("ray.util.scheduling_strategies")
    elsewhere = tmp_path / "node-local"
    elsewhere.mkdir()
    with pytest.raises(ClusterError) as err:
        _cluster(elsewhere).probe_shared_root(tmp_path / "root", [NODE])
    assert "is not shared with node abababab (10.0.0.7)" in str(err.value)
    assert "--checkpoint-root" in str(err.value)
