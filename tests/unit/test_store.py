"""The store: schema, migrations, one transaction per change, group commit isolation."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from hpd.core.events import ExperimentCancelled
from hpd.core.records import ExperimentIn, NewEvent, Report, TrialIn
from hpd.errors import StoreError
from hpd.io.store import SCHEMA_VERSION, Store


async def test_fresh_database_is_migrated_to_current(tmp_path: Path) -> None:
    """A new file gets the whole schema and user_version = SCHEMA_VERSION, in WAL mode."""
    store = await Store.open(tmp_path / "db")
    mode = await store.read(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
    version = await store.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
    sync = await store.read(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    await store.close()
    assert (mode, version, sync) == ("wal", SCHEMA_VERSION, 2)


async def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    """A database written by the first schema keeps its rows and gains what came later."""
    from hpd.io.store import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "db")
    for sql in MIGRATIONS[0]:
        conn.execute(sql)
    conn.execute("INSERT INTO experiments VALUES (1, 'old', '{}', 'completed', 1.0, 2.0, NULL)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = await Store.open(tmp_path / "db")
    version = await store.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
    index = await store.read(
        lambda c: c.execute(
            "SELECT name FROM sqlite_master WHERE name = 'attempts_by_trial'"
        ).fetchone()
    )
    names = [e.name for e in await store.experiments()]
    await store.close()
    assert (version, index, names) == (SCHEMA_VERSION, ("attempts_by_trial",), ["old"])


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer hpd is refused with a clear message, untouched."""
    conn = sqlite3.connect(tmp_path / "db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this hpd supports"):
        await Store.open(tmp_path / "db")


async def test_concurrent_writes_share_a_commit_but_fail_alone(tmp_path: Path) -> None:
    """Group commit: a failing write rolls back alone; the others are committed."""
    store = await Store.open(tmp_path / "db")
    await store.commit("exp", [ExperimentIn(1, "e", "{}", "running", 0.0)])
    good = store.commit("t1", [TrialIn(1, 1, 0, 0, "{}", "queued", 0, 1, 0.0)])
    dup = store.commit(
        "t2", [TrialIn(2, 1, 0, 0, "{}", "queued", 0, 1, 0.0), NewEvent(1, 0.0, None, ExperimentCancelled())]
    )
    ok, err = await asyncio.gather(good, dup, return_exceptions=True)
    assert ok is None
    assert isinstance(err, StoreError)
    rows = await store.trials(1)
    events = await store.events(1)
    await store.close()
    assert [r.id for r in rows] == [1]
    assert events == []  # the failed write's event rolled back with it


async def test_reports_are_unique_per_epoch(tmp_path: Path) -> None:
    """A re-run epoch replaces its metrics row (a resumed segment repeats epochs)."""
    store = await Store.open(tmp_path / "db")
    await store.commit(
        "exp",
        [
            ExperimentIn(1, "e", "{}", "running", 0.0),
            TrialIn(1, 1, 0, 0, "{}", "running", 0, 3, 0.0),
        ],
    )
    await store.add_reports([Report(1, 1, 1, 0.0, '{"loss": 2.0}')])
    await store.add_reports(
        [Report(1, 1, 2, 0.0, '{"loss": 1.0}'), Report(1, 2, 2, 0.0, '{"loss": 0.5}')]
    )
    got = await store.metrics([1])
    trial = await store.trial(1)
    await store.close()
    assert got[1] == [(1, '{"loss": 1.0}'), (2, '{"loss": 0.5}')]
    assert trial is not None and trial.epoch == 2
