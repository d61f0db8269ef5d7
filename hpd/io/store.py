"""The store: the only module that touches SQLite (the standard library's ``sqlite3``).

Owns the schema, its migrations (``PRAGMA user_version``), every query, and the rule that each
state change is one ``BEGIN IMMEDIATE`` transaction on the daemon's single connection (WAL,
``synchronous=FULL``), so a kill at any moment loses nothing that was acknowledged. Reports that
arrive together are group-committed: one transaction, many rows, every caller acknowledged only
after the commit. The connection lives on one worker thread of its own: every transaction is a
function run there whole (one thread hop per transaction, not per statement), so the event
loop never waits on SQLite or an fsync. Must never decide anything (that is the ladder's job)
or spawn processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hpd.core import events, numbers
from hpd.core.records import (
    ATTEMPT_COLUMNS,
    INLINE,
    TRIAL_COLUMNS,
    AttemptIn,
    AttemptRow,
    AttemptUpdate,
    CheckpointRegistered,
    EventRow,
    ExperimentIn,
    ExperimentRow,
    ExperimentState,
    NewEvent,
    Op,
    Report,
    ReportsIn,
    ResultIn,
    TrialIn,
    TrialRow,
    TrialsOfExperiment,
    TrialUpdate,
)
from hpd.errors import StoreError
from hpd.io import faults

T = TypeVar("T")

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the initial schema
    (
        """CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            ended_at REAL,
            parent_id INTEGER REFERENCES experiments(id)
        )""",
        """CREATE TABLE trials (
            id INTEGER PRIMARY KEY,
            exp_id INTEGER NOT NULL REFERENCES experiments(id),
            idx INTEGER NOT NULL,
            bracket INTEGER NOT NULL,
            params TEXT NOT NULL,
            state TEXT NOT NULL,
            rung INTEGER NOT NULL,
            target INTEGER NOT NULL,
            epoch INTEGER NOT NULL DEFAULT 0,
            ckpt_path TEXT,
            ckpt_epoch INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            restarts INTEGER NOT NULL DEFAULT 0,
            gpu TEXT,
            error TEXT,
            subset TEXT,
            created_at REAL NOT NULL,
            UNIQUE (exp_id, idx)
        )""",
        """CREATE TABLE results (
            trial_id INTEGER NOT NULL REFERENCES trials(id),
            rung INTEGER NOT NULL,
            value REAL,
            kind TEXT NOT NULL CHECK (kind IN ('finite', 'nan', 'inf', '-inf')),
            epoch INTEGER NOT NULL,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (trial_id, rung)
        ) WITHOUT ROWID""",
        """CREATE TABLE metrics (
            trial_id INTEGER NOT NULL REFERENCES trials(id),
            epoch INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            time REAL NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (trial_id, epoch)
        ) WITHOUT ROWID""",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            exp_id INTEGER NOT NULL,
            time REAL NOT NULL,
            type TEXT NOT NULL,
            trial_id INTEGER,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX events_by_exp ON events (exp_id, seq)",
        """CREATE TABLE attempts (
            id INTEGER PRIMARY KEY,
            trial_id INTEGER NOT NULL REFERENCES trials(id),
            rung INTEGER NOT NULL,
            slot TEXT NOT NULL,
            pid INTEGER,
            pgid INTEGER,
            start_ticks INTEGER,
            boot_id TEXT,
            started_at REAL NOT NULL,
            ended_at REAL,
            outcome TEXT
        )""",
        "CREATE INDEX attempts_open ON attempts (ended_at) WHERE ended_at IS NULL",
    ),
    # 2: per-trial run time (`run_s`) sums a trial's attempts
    ("CREATE INDEX attempts_by_trial ON attempts (trial_id)",),
    # 3: small checkpoints kept in the database (trials.ckpt_path = INLINE points here)
    (
        """CREATE TABLE inline_checkpoints (
            trial_id INTEGER PRIMARY KEY REFERENCES trials(id),
            epoch INTEGER NOT NULL,
            data BLOB NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

Tx = Callable[[sqlite3.Connection], T]


class _Thread:
    """One thread that owns the SQLite connection and runs functions on it, in order.

    A bare queue and ``call_soon_threadsafe`` (as aiosqlite does inside): measured cheaper per
    transaction than ``run_in_executor``, whose concurrent futures add locks and callbacks.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name="hpd-store", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((fn, fut))
        return fut

    def stop(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            try:
                result = fn()
            except BaseException as exc:
                fut.get_loop().call_soon_threadsafe(_settle, fut, None, exc)
            else:
                fut.get_loop().call_soon_threadsafe(_settle, fut, result, None)


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():  # its waiter was cancelled meanwhile
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)


class Store:
    """The daemon's one connection. Open with ``await Store.open(path)``."""

    def __init__(self, conn: sqlite3.Connection, thread: _Thread) -> None:
        self._conn = conn
        self._thread = thread  # the connection is only ever used from it
        self._queue: list[tuple[str, Tx[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path) -> Store:
        thread = _Thread()
        try:
            conn = await thread.call(functools.partial(_connect, path))
        except sqlite3.Error as exc:
            thread.stop()
            raise StoreError(f"cannot open {path}: {exc}") from exc
        store = cls(conn, thread)
        try:
            await store._run(_configure)
            await store._run(_migrate)
        except BaseException:
            await store._shutdown()
            raise
        return store

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._shutdown()

    async def _shutdown(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            await self._thread.call(self._conn.close)
        self._thread.stop()

    # -- plumbing -------------------------------------------------------------------------

    async def _run(self, fn: Tx[T]) -> T:
        # A whole transaction runs as one function on the store's thread: one hop in all.
        try:
            return await self._thread.call(functools.partial(fn, self._conn))
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    async def write(self, label: str, fn: Tx[T]) -> T:
        """Run ``fn`` in a BEGIN IMMEDIATE transaction; all or nothing; durable on return.

        Group commit: writes queued while a commit is in flight share the next transaction,
        each inside its own SAVEPOINT, so one failing write rolls back alone and the others
        still commit. Nobody is answered before the COMMIT (fsync) that holds their write.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((label, fn, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await fut  # type: ignore[no-any-return]

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                outcomes = await self._run(functools.partial(_group_tx, batch=batch))
            except Exception as exc:  # the COMMIT itself failed: nobody's write happened
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, _, fut), (ok, value) in zip(batch, outcomes, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    async def commit(self, label: str, ops: Sequence[Op]) -> None:
        """Apply ``ops`` in one transaction: all of them or none."""
        await self.write(label, functools.partial(apply_ops, ops=ops))

    async def read(self, fn: Tx[T]) -> T:
        return await self._run(fn)

    # -- reports: group commit ------------------------------------------------------------

    async def add_reports(self, reports: Sequence[Report]) -> None:
        """Persist epochs' metrics; returns once they are committed (possibly with others')."""
        await self.write("reports", functools.partial(_insert_reports, batch=reports))

    # -- reads ----------------------------------------------------------------------------

    async def experiments(self) -> list[ExperimentRow]:
        rows = await self.read(
            lambda c: c.execute("SELECT * FROM experiments ORDER BY id").fetchall()
        )
        return [ExperimentRow(*r) for r in rows]

    async def experiment(self, exp_id: int) -> ExperimentRow | None:
        row = await self.read(
            lambda c: c.execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        )
        return ExperimentRow(*row) if row else None

    async def trials(self, exp_id: int) -> list[TrialRow]:
        rows = await self.read(
            lambda c: c.execute(
                "SELECT * FROM trials WHERE exp_id = ? ORDER BY idx", (exp_id,)
            ).fetchall()
        )
        return [TrialRow(*r) for r in rows]

    async def trial(self, trial_id: int) -> TrialRow | None:
        row = await self.read(
            lambda c: c.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone()
        )
        return TrialRow(*row) if row else None

    async def results(self, exp_id: int) -> dict[int, dict[int, float]]:
        rows = await self.read(
            lambda c: c.execute(
                "SELECT r.trial_id, r.rung, r.value, r.kind FROM results r"
                " JOIN trials t ON t.id = r.trial_id WHERE t.exp_id = ?",
                (exp_id,),
            ).fetchall()
        )
        out: dict[int, dict[int, float]] = {}
        for trial_id, rung, value, kind in rows:
            out.setdefault(trial_id, {})[rung] = numbers.from_kind(value, kind)
        return out

    async def run_seconds(self, exp_id: int, now: float) -> dict[int, float]:
        """Seconds each trial of the experiment has run, summed over its attempts (an attempt
        still open counts up to ``now``)."""
        rows = await self.read(
            lambda c: c.execute(
                "SELECT a.trial_id, SUM(COALESCE(a.ended_at, ?) - a.started_at) FROM attempts a"
                " JOIN trials t ON t.id = a.trial_id WHERE t.exp_id = ? GROUP BY a.trial_id",
                (now, exp_id),
            ).fetchall()
        )
        return {trial_id: max(0.0, float(sec)) for trial_id, sec in rows}

    async def events(
        self, exp_id: int, *, after: int = 0, types: Sequence[str] | None = None, limit: int = -1
    ) -> list[EventRow]:
        sql = "SELECT * FROM events WHERE exp_id = ? AND seq > ?"
        params: list[Any] = [exp_id, after]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params += list(types)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        rows = await self.read(lambda c: c.execute(sql, params).fetchall())
        return [EventRow(*r) for r in rows]

    async def metrics(self, trial_ids: Iterable[int]) -> dict[int, list[tuple[int, str]]]:
        ids = list(trial_ids)
        if not ids:
            return {}

        def q(c: sqlite3.Connection) -> list[Any]:
            out: list[Any] = []
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                out += c.execute(
                    f"SELECT trial_id, epoch, data FROM metrics WHERE trial_id IN"
                    f" ({','.join('?' * len(chunk))}) ORDER BY trial_id, epoch",
                    chunk,
                ).fetchall()
            return out

        result: dict[int, list[tuple[int, str]]] = {}
        for trial_id, epoch, data in await self.read(q):
            result.setdefault(trial_id, []).append((epoch, data))
        return result

    async def metric_at(self, trial_id: int, epoch: int) -> str | None:
        row = await self.read(
            lambda c: c.execute(
                "SELECT data FROM metrics WHERE trial_id = ? AND epoch = ?", (trial_id, epoch)
            ).fetchone()
        )
        return row[0] if row else None

    async def inline_checkpoint(self, trial_id: int) -> bytes | None:
        """The state of the trial's checkpoint kept in the database, if it has one."""
        row = await self.read(
            lambda c: c.execute(
                "SELECT data FROM inline_checkpoints WHERE trial_id = ?", (trial_id,)
            ).fetchone()
        )
        return bytes(row[0]) if row else None

    async def open_attempts(self) -> list[AttemptRow]:
        rows = await self.read(
            lambda c: c.execute(
                "SELECT id, trial_id, rung, slot, pid, pgid, start_ticks, boot_id, started_at"
                " FROM attempts WHERE ended_at IS NULL"
            ).fetchall()
        )
        return [AttemptRow(*r) for r in rows]


# -- transaction bodies (run on the connection's thread) -----------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode (isolation_level=None): every transaction is an explicit BEGIN IMMEDIATE.
    # check_same_thread stays on: only the store's one thread ever touches the connection.
    return sqlite3.connect(str(path), isolation_level=None)


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")


def _migrate(conn: sqlite3.Connection) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {current}, newer than this hpd supports"
            f" ({SCHEMA_VERSION}); upgrade hpd or use another --state-dir"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        # A migration and its version bump commit together or not at all.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in MIGRATIONS[version - 1]:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _group_tx(
    conn: sqlite3.Connection, *, batch: Sequence[tuple[str, Tx[Any], Any]]
) -> list[tuple[bool, Any]]:
    """One transaction for a batch of writes, each in its own savepoint."""
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for label, fn, _ in batch:
            conn.execute("SAVEPOINT w")
            try:
                outcomes.append((True, fn(conn)))
                conn.execute("RELEASE w")
            except (sqlite3.Error, StoreError) as exc:
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                err = exc if isinstance(exc, StoreError) else StoreError(f"{label}: {exc}")
                outcomes.append((False, err))
            for part in label.split("+"):
                faults.point(f"before_commit:{part}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    for label, _, _ in batch:
        for part in label.split("+"):
            faults.point(f"after_commit:{part}")
    return outcomes


def _insert_reports(conn: sqlite3.Connection, *, batch: Sequence[Report]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO metrics (trial_id, epoch, attempt, time, data) VALUES (?,?,?,?,?)",
        [(r.trial_id, r.epoch, r.attempt, r.time, r.data) for r in batch],
    )
    conn.executemany(
        "UPDATE trials SET epoch = ? WHERE id = ? AND epoch < ?",
        [(r.epoch, r.trial_id, r.epoch) for r in batch],
    )


def insert_event(conn: sqlite3.Connection, ev: NewEvent) -> int:
    cur = conn.execute(
        "INSERT INTO events (exp_id, time, type, trial_id, data) VALUES (?,?,?,?,?)",
        (ev.exp_id, ev.time, ev.event.TYPE, ev.trial_id, events.to_json(ev.event)),
    )
    return int(cur.lastrowid or 0)


def apply_ops(conn: sqlite3.Connection, *, ops: Sequence[Op]) -> None:
    for op in ops:
        _APPLY[type(op)](conn, op)


def _exp_in(c: sqlite3.Connection, op: Any) -> None:
    c.execute(
        "INSERT INTO experiments (id, name, spec, state, created_at, parent_id)"
        " VALUES (?,?,?,?,?,?)",
        (op.id, op.name, op.spec, op.state, op.created_at, op.parent_id),
    )


def _exp_state(c: sqlite3.Connection, op: Any) -> None:
    c.execute(
        "UPDATE experiments SET state = ?, ended_at = ? WHERE id = ?",
        (op.state, op.ended_at, op.id),
    )


def _trial_in(c: sqlite3.Connection, op: Any) -> None:
    c.execute(
        "INSERT INTO trials (id, exp_id, idx, bracket, params, state, rung, target, created_at)"
        " VALUES (?,?,?,?,?,?,?,?,?)",
        (
            op.id,
            op.exp_id,
            op.idx,
            op.bracket,
            op.params,
            op.state,
            op.rung,
            op.target,
            op.created_at,
        ),
    )


def _update(c: sqlite3.Connection, table: str, allowed: frozenset[str], op: Any) -> None:
    bad = set(op.values) - allowed
    if bad:
        raise StoreError(f"unknown {table} columns: {sorted(bad)}")
    cols = ", ".join(f"{k} = ?" for k in op.values)
    c.execute(f"UPDATE {table} SET {cols} WHERE id = ?", (*op.values.values(), op.id))


def _trials_of_exp(c: sqlite3.Connection, op: Any) -> None:
    marks = ",".join("?" * len(op.from_states))
    c.execute(
        f"UPDATE trials SET state = ? WHERE exp_id = ? AND state IN ({marks})",
        (op.state, op.exp_id, *op.from_states),
    )


def _result_in(c: sqlite3.Connection, op: Any) -> None:
    kind = numbers.kind(op.value)
    c.execute(
        "INSERT INTO results (trial_id, rung, value, kind, epoch, recorded_at)"
        " VALUES (?,?,?,?,?,?)",
        (
            op.trial_id,
            op.rung,
            op.value if kind == "finite" else None,
            kind,
            op.epoch,
            op.recorded_at,
        ),
    )


def _attempt_in(c: sqlite3.Connection, op: Any) -> None:
    c.execute(
        "INSERT INTO attempts"
        " (id, trial_id, rung, slot, started_at, pid, pgid, start_ticks, boot_id)"
        " VALUES (?,?,?,?,?,?,?,?,?)",
        (
            op.id,
            op.trial_id,
            op.rung,
            op.slot,
            op.started_at,
            op.pid,
            op.pgid,
            op.start_ticks,
            op.boot_id,
        ),
    )


def _event_in(c: sqlite3.Connection, op: Any) -> None:
    insert_event(c, op)


def _checkpoint(c: sqlite3.Connection, op: Any) -> None:
    if op.data is not None:
        c.execute(
            "INSERT OR REPLACE INTO inline_checkpoints (trial_id, epoch, data) VALUES (?,?,?)",
            (op.trial_id, op.epoch, op.data),
        )
        path = INLINE
    else:
        # The state moved to a directory: a stale inline copy must never be resumed from.
        c.execute("DELETE FROM inline_checkpoints WHERE trial_id = ?", (op.trial_id,))
        path = op.path
    c.execute(
        "UPDATE trials SET ckpt_path = ?, ckpt_epoch = ? WHERE id = ?",
        (path, op.epoch, op.trial_id),
    )


_APPLY: dict[type, Callable[[sqlite3.Connection, Any], None]] = {
    ExperimentIn: _exp_in,
    ExperimentState: _exp_state,
    TrialIn: _trial_in,
    TrialUpdate: lambda c, op: _update(c, "trials", TRIAL_COLUMNS, op),
    TrialsOfExperiment: _trials_of_exp,
    ResultIn: _result_in,
    AttemptIn: _attempt_in,
    AttemptUpdate: lambda c, op: _update(c, "attempts", ATTEMPT_COLUMNS, op),
    NewEvent: _event_in,
    ReportsIn: lambda c, op: _insert_reports(c, batch=op.reports),
    CheckpointRegistered: _checkpoint,
}


async def next_ids(store: Store) -> dict[str, int]:
    """The next free id of each table; the daemon, as the only writer, allocates ids itself."""

    def q(c: sqlite3.Connection) -> dict[str, int]:
        out = {}
        for table in ("experiments", "trials", "attempts"):
            out[table] = (
                int(c.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()[0]) + 1
            )
        return out

    return await store.read(q)
