"""The trial API (``hpd.trial``): what a training function or program sees of hpd.

``TrialContext`` and ``context()`` live in ``hpd.trial.api``; the warm worker (``python -m
hpd.trial.warm``) and the parent-death shim (``python -m hpd.trial.shim``) that the daemon
launches live beside it. This package must stay importable without torch or asyncio: every
trial process imports it.
"""

from __future__ import annotations

from hpd.core.protocol import CHECKPOINT_NAME, INLINE_MAX
from hpd.trial.api import BATCH_MAX, BATCH_S, TrialContext, context

__all__ = ["BATCH_MAX", "BATCH_S", "CHECKPOINT_NAME", "INLINE_MAX", "TrialContext", "context"]
