"""Clients of the daemon (``hpd.client``): ``Client`` and ``AsyncClient`` over the local socket.

Both live in ``hpd.client.api``. A client knows the wire protocol and the state dir's layout,
never the daemon's internals: it must never import ``hpd.daemon`` or touch the database.
"""

from __future__ import annotations

from hpd.client.api import FINAL, AsyncClient, AsyncExperiment, Client, Experiment
from hpd.core.lifecycle import FINAL_EXPERIMENT_STATES, FINAL_TRIAL_STATES

__all__ = [
    "FINAL",
    "FINAL_EXPERIMENT_STATES",
    "FINAL_TRIAL_STATES",
    "AsyncClient",
    "AsyncExperiment",
    "Client",
    "Experiment",
]
