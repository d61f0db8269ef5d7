"""hpd: a single-node hyperparameter-search daemon.

This package is the daemon, its pure core and its clients. It must never import torch
(only ``hpd.subset`` does, lazily) or textual (only ``tui`` does).
"""

from __future__ import annotations

from hpd.version import __version__

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy so that `import hpd` stays cheap: trials import hpd.trial without the client.
    if name in ("Client", "AsyncClient"):
        from hpd import client

        return getattr(client, name)
    raise AttributeError(name)
