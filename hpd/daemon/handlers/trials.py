"""The requests a running trial makes: report, checkpoint, timing.

Every accepted message is durable before it is acknowledged (the rules of what may be
recorded are ``hpd.daemon.reports``'s). Handed the store, the daemon's state, the layout and
the clock; never imports the daemon.
"""

from __future__ import annotations

import json
from typing import Any

from hpd.core.records import ReportsIn, TrialUpdate
from hpd.daemon import reports
from hpd.daemon.router import Handler
from hpd.daemon.state import Clock, DaemonState, Running
from hpd.errors import HpdError
from hpd.io.paths import Layout
from hpd.io.store import Store

MAX_TIMING = 4096


class TrialHandlers:
    def __init__(self, store: Store, state: DaemonState, layout: Layout, clock: Clock) -> None:
        self.store, self.state, self.layout, self.clock = store, state, layout, clock

    def routes(self) -> dict[str, Handler]:
        return {"report": self.report, "checkpoint": self.checkpoint, "timing": self.timing}

    async def report(
        self, trial: Any, attempt: Any, reports: Any = None, epoch: Any = None, metrics: Any = None
    ) -> dict[str, Any]:
        """One report, or a batch (``reports``: [{epoch, metrics}]), committed together."""
        run = self._fenced(trial, attempt)
        items = reports if reports is not None else [{"epoch": epoch, "metrics": metrics}]
        parsed = _parse(run, items, self.clock())
        await self.store.add_reports(parsed)
        _reported(run, parsed, self.clock())
        return {"stop": run.stop_reason is not None}

    async def checkpoint(
        self,
        trial: Any,
        attempt: Any,
        epoch: Any,
        name: Any = None,
        reports: Any = (),
        data: Any = None,
    ) -> dict[str, Any]:
        run = self._fenced(trial, attempt)
        reg = _registration(run, self.layout, epoch, name, data)
        parsed = _parse(run, list(reports or []), self.clock())
        await self.store.commit("checkpoint", [ReportsIn(tuple(parsed)), reg])
        _registered(run, reg)
        _reported(run, parsed, self.clock())
        return {"registered": True}

    async def timing(self, trial: Any, attempt: Any, timing: Any) -> dict[str, Any]:
        run = self._fenced(trial, attempt)
        if not isinstance(timing, dict):
            raise HpdError("timing: must be an object")
        text = json.dumps(timing, allow_nan=False)
        if len(text) > MAX_TIMING:
            raise HpdError("timing: too large")
        await self.store.commit("timing", [TrialUpdate(run.trial.id, {"subset": text})])
        run.last_progress = self.clock()
        return {}

    def _fenced(self, trial: Any, attempt: Any) -> Running:
        return reports.fenced(self.state, trial, attempt)


# The argument named ``reports`` shadows the module inside the handlers: bind its functions here.
_parse = reports.parse_reports
_reported = reports.reported
_registration = reports.registration
_registered = reports.registered
