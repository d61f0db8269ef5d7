"""The engine and the request handlers in-process: a real SQLite file, a fake launcher, a fake clock.

No socket, no trial process: the fake launcher answers each segment the way a warm worker
does (its last reports ride with the answer), or hangs until it is signalled. Time moves only
when a test moves it, so the progress timeout and the grace before SIGKILL are tested without
waiting for them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hpd.core import protocol
from hpd.daemon.engine import Engine
from hpd.daemon.handlers.control import ControlHandlers
from hpd.daemon.handlers.queries import QueryHandlers
from hpd.daemon.handlers.trials import TrialHandlers
from hpd.daemon.ports import Prepared, Started
from hpd.daemon.recovery import recover
from hpd.daemon.router import Router
from hpd.daemon.state import DaemonState, Running, Slots
from hpd.daemon.workers import Launch, Outcome
from hpd.errors import HpdError, SpecError
from hpd.io.gpus import Lease, SlotTable
from hpd.io.paths import Layout
from hpd.io.store import Store
from tests.integration.asha_check import check_asha
from tests.waits import wait_until_async

Behaviour = Callable[[Running, Launch, "FakeProc"], Awaitable[Outcome]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProc:
    signals: list[int] = field(default_factory=list)
    signalled: asyncio.Event = field(default_factory=asyncio.Event)

    def signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.signalled.set()


class FakeLauncher:
    def __init__(self, behave: Behaviour) -> None:
        self.behave = behave
        self.procs: list[FakeProc] = []

    async def prepare(self, exp: Any, lease: Lease) -> Prepared:
        return Prepared()

    async def run(self, run: Running, launch: Launch, prepared: Prepared, started: Started) -> Outcome:
        proc = FakeProc()
        self.procs.append(proc)
        run.proc = proc
        return await self.behave(run, launch, proc)

    async def prewarm(self, exp: Any, leases: Any) -> None:
        return None

    def discard(self, lease: Lease) -> None:
        return None

    async def close(self) -> None:
        return None


async def answer_like_a_warm_worker(run: Running, launch: Launch, proc: FakeProc) -> Outcome:
    """Every epoch of the segment reported in the answer: loss falls with lr and epochs."""
    await asyncio.sleep(0)
    seg = launch.segment
    lr = float(seg["params"]["lr"])
    reports = [
        {"epoch": e, "metrics": {"loss": abs(lr - 0.3) + 1.0 / e}}
        for e in range(seg["checkpoint_epoch"] + 1, seg["resource"] + 1)
    ]
    return Outcome("ok", end={"reports": reports})


async def hang_until_killed(run: Running, launch: Launch, proc: FakeProc) -> Outcome:
    while signal.SIGKILL not in proc.signals:
        proc.signalled.clear()
        await proc.signalled.wait()
    return Outcome("crashed", "killed by signal 9 SIGKILL", -9)


@dataclass
class Rig:
    store: Store
    state: DaemonState
    engine: Engine
    control: ControlHandlers
    queries: QueryHandlers
    trials: TrialHandlers
    clock: FakeClock
    launcher: FakeLauncher
    router: Router
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self.engine.run_scheduler()))


async def make_rig(tmp_path: Path, behave: Behaviour, slots: int = 3) -> Rig:
    store = await Store.open(tmp_path / "hpd.sqlite3")
    state, clock = DaemonState(), FakeClock()
    table = Slots(SlotTable.build([], slots_per_gpu=1, cpu_slots=slots))
    launcher = FakeLauncher(behave)
    layout = Layout(tmp_path)
    engine = Engine(
        store=store, state=state, slots=table, layout=layout, launcher=launcher, clock=clock,
        grace_s=10.0,
    )
    rig = Rig(
        store, state, engine, ControlHandlers(store, state, engine, clock),
        QueryHandlers(store, state, table, layout, clock), TrialHandlers(store, state, layout, clock),
        clock, launcher, Router(),
    )
    for h in (rig.control, rig.queries, rig.trials):
        rig.router.include(h.routes())
    return rig


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    made: list[Rig] = []

    async def make(behave: Behaviour = answer_like_a_warm_worker, slots: int = 3) -> Rig:
        rig = await make_rig(tmp_path / f"r{len(made)}", behave, slots)
        made.append(rig)
        return rig

    (tmp_path / "r0").mkdir()
    (tmp_path / "r1").mkdir()
    yield make
    for rig in made:
        for t in rig.tasks:
            t.cancel()
        await asyncio.gather(*rig.tasks, return_exceptions=True)
        for run in list(rig.state.running.values()):
            if run.task:
                run.task.cancel()
        await rig.store.close()


def spec(trials: int = 27, **limits: Any) -> dict[str, Any]:
    return {
        "name": "engine",
        "metric": "loss",
        "mode": "min",
        "workdir": "/tmp",
        "entrypoint": "never.imported:train",
        "searcher": {"name": "asha", "max_trials": trials, "min_resource": 1, "max_resource": 9, "eta": 3},
        "space": {"lr": {"type": "uniform", "low": 0.0, "high": 1.0}},
        "resources": {"gpus_per_trial": 0, "max_concurrent": 3},
        "limits": {"max_restarts": 1, **limits},
    }


async def test_a_whole_search_runs_through_the_engine_and_obeys_asha(rig_factory: Any) -> None:
    rig = await rig_factory()
    rig.start()
    exp = (await rig.control.submit(spec()))["id"]
    status = await rig.queries.wait(exp, timeout=120)
    assert status["state"] == "completed"
    assert sum(status["trials"].values()) == 27
    events = await rig.queries.events(exp)
    assert check_asha(events, eta=3, mode="min", n_rungs=3) > 0
    assert status["best"]["value"] == min(
        float(t["results"][max(t["results"], key=int)]) for t in await rig.queries.trials(exp)
        if t["results"] and max(t["results"], key=int) == str(status["best"]["rung"])
    )


async def test_recovery_rebuilds_the_same_ladder(rig_factory: Any, tmp_path: Path) -> None:
    rig = await rig_factory()
    rig.start()
    exp = (await rig.control.submit(spec()))["id"]
    await rig.queries.wait(exp, timeout=120)
    before = await rig.queries.ladder(exp)
    again = await make_rig(tmp_path / "r0", answer_like_a_warm_worker)
    await recover(again.engine)
    assert exp not in again.state.experiments  # it had ended: nothing to resume
    assert await again.queries.ladder(exp) == before
    await again.store.close()


async def test_no_progress_is_killed_by_the_clock_and_retried(rig_factory: Any) -> None:
    rig = await rig_factory(behave=hang_until_killed, slots=1)
    rig.start()
    exp = (await rig.control.submit(spec(trials=1, progress_timeout_s=60)))["id"]
    await wait_until_async(lambda: bool(rig.state.running), what="a segment running")
    rig.engine.tick()
    assert rig.launcher.procs[0].signals == []  # time has not moved: nothing happens
    rig.clock.now += 61
    rig.engine.tick()
    assert rig.launcher.procs[0].signals == [signal.SIGKILL]
    async def failures() -> list[dict[str, Any]]:
        return [e for e in await rig.queries.events(exp) if e["type"] == "segment_failed"]

    await wait_until_async(failures, what="the failure recorded")
    failed = (await failures())[0]
    assert failed["reason"] == "no progress for 60 s: killed"
    assert failed["restarts"] == 1 and failed["retry_in_s"] == 0.25


async def test_pause_gets_sigterm_then_sigkill_after_the_grace(rig_factory: Any) -> None:
    rig = await rig_factory(behave=hang_until_killed, slots=1)
    rig.start()
    exp = (await rig.control.submit(spec(trials=1)))["id"]
    await wait_until_async(lambda: bool(rig.state.running), what="a segment running")
    await rig.control.pause(exp)
    proc = rig.launcher.procs[0]
    assert proc.signals == [signal.SIGTERM]
    rig.clock.now += 9.9
    rig.engine.tick()
    assert proc.signals == [signal.SIGTERM]  # still within the grace
    rig.clock.now += 0.2
    rig.engine.tick()
    assert proc.signals == [signal.SIGTERM, signal.SIGKILL]
    await wait_until_async(lambda: not rig.state.running, what="the segment ended")
    trial = (await rig.queries.trials(exp))[0]
    assert trial["state"] == "queued" and trial["restarts"] == 0  # interrupted, not crashed


async def test_a_stale_attempt_is_refused_and_changes_nothing(rig_factory: Any) -> None:
    rig = await rig_factory(behave=hang_until_killed, slots=1)
    rig.start()
    exp = (await rig.control.submit(spec(trials=1)))["id"]
    await wait_until_async(lambda: bool(rig.state.running), what="a segment running")
    run = next(iter(rig.state.running.values()))
    with pytest.raises(HpdError, match="stale attempt"):
        await rig.trials.report(run.trial.id, run.attempt + 1, epoch=1, metrics={"loss": 1.0})
    assert (await rig.queries.metrics([run.trial.id])) == {}
    await rig.trials.report(run.trial.id, run.attempt, epoch=1, metrics={"loss": "nan"})
    assert (await rig.queries.metrics([run.trial.id]))[str(run.trial.id)] == [
        {"epoch": 1, "loss": "nan"}
    ]
    await rig.control.cancel(exp)


async def test_bad_input_names_the_field_and_writes_nothing(rig_factory: Any) -> None:
    rig = await rig_factory()
    bad = spec()
    bad["searcher"]["eta"] = 1
    with pytest.raises(SpecError, match=r"searcher\.eta"):
        await rig.control.submit(bad)
    with pytest.raises(HpdError, match="got 'x'"):
        await rig.control.pause("x")
    with pytest.raises(HpdError, match="no experiment 7"):
        await rig.queries.status(7)
    assert await rig.queries.ls() == []


async def test_the_router_refuses_unknown_ops_and_arguments(rig_factory: Any) -> None:
    rig = await rig_factory()
    with pytest.raises(HpdError, match="unknown op 'ping'"):  # admin handlers not included here
        await rig.router.handle(protocol.Request("ping"))
    with pytest.raises(HpdError, match="unexpected keyword argument 'colour'"):
        await rig.router.handle(protocol.Request("ls", {"colour": "red"}))
    assert await rig.router.handle(protocol.Request("ls")) == []
