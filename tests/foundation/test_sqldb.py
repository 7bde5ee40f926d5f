"""SQLite's write-ahead log is folded back by a thread of its own, never inside a commit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from qmtl.devstack import wait_for
from qmtl.foundation.sqldb import SQLITE_BACKSTOP_PAGES, SqlDatabase, WouldBlock, without_waiting
from qmtl.testing.stalls import held_elsewhere


def _write(db: SqlDatabase, commits: int, rows: int = 200) -> None:
    db.create(["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v TEXT)"])
    for c in range(commits):
        with db.txn() as cur:
            cur.executemany(
                "INSERT INTO t (k, v) VALUES (?, ?)",
                [(f"{c}-{i}", "x" * 200) for i in range(rows)],
            )


def test_the_checkpointer_thread_folds_every_committed_frame_back(tmp_path: Path) -> None:
    db = SqlDatabase.open(f"sqlite:{tmp_path / 'wal.db'}")
    try:
        checkpointer = db._checkpointer
        assert checkpointer is not None
        # Commits only checkpoint by themselves far beyond what the thread lets pile up.
        autocheckpoint = db._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert autocheckpoint == SQLITE_BACKSTOP_PAGES
        _write(db, commits=20)

        def folded() -> bool:
            last = checkpointer.last
            return last is not None and last[1] > 0 and last[1] == last[2]

        wait_for(folded, timeout=15, what="a checkpoint that backfills the whole WAL")
        assert checkpointer.runs >= 1
    finally:
        db.close()
    assert not checkpointer._thread.is_alive()
    reopened = SqlDatabase.open(f"sqlite:{tmp_path / 'wal.db'}")
    try:
        assert reopened.select("SELECT COUNT(*) FROM t") == [(20 * 200,)]
    finally:
        reopened.close()


def test_an_in_memory_database_has_no_checkpointer() -> None:
    db = SqlDatabase.open("sqlite::memory:")
    try:
        assert db._checkpointer is None
        _write(db, commits=2)
        db.checkpoint()  # nothing to do, and no error
        assert db.select("SELECT COUNT(*) FROM t") == [(400,)]
    finally:
        db.close()


def test_without_waiting_a_busy_sqlite_refuses_at_once_and_a_free_one_commits(
    tmp_path: Path,
) -> None:
    """An event loop runs small SQLite work inline only when it cannot wait: another
    thread's transaction makes it raise WouldBlock (and write nothing); a free store
    commits as usual."""
    db = SqlDatabase.open(f"sqlite:{tmp_path / 'busy.db'}")
    db.create(["CREATE TABLE t (k TEXT PRIMARY KEY)"])
    with held_elsewhere(db.txn):
        started = time.monotonic()
        with pytest.raises(WouldBlock, match="busy"), without_waiting(), db.txn() as cur:
            cur.execute("INSERT INTO t VALUES ('refused')")
        assert time.monotonic() - started < 1.0
    with without_waiting(), db.txn() as cur:
        cur.execute("INSERT INTO t VALUES ('inline')")
    assert db.select("SELECT k FROM t") == [("inline",)]
    db.close()


def test_without_waiting_postgresql_always_refuses(postgres) -> None:  # type: ignore[no-untyped-def]
    db = SqlDatabase.open(postgres.new_database())
    try:
        with pytest.raises(WouldBlock, match="network"), without_waiting(), db.txn():
            pass
        assert db.select("SELECT 1") == [(1,)]  # outside the block it waits as ever
    finally:
        db.close()


def test_the_write_ahead_log_starts_over_once_over_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits one after another never leave a passive checkpoint a moment to finish, so
    the log used to grow with every write (25 times the bytes submitted, in a DAG
    Manager); once it is past its bound the checkpointer starts it over, and later
    writes reuse the file from its start instead of growing it."""
    from qmtl.foundation import sqldb

    monkeypatch.setattr(sqldb, "SQLITE_RESTART_PAGES", 1024)
    db = SqlDatabase(f"sqlite:{tmp_path / 'steady.db'}")
    try:
        db.create(["CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"])
        wal = tmp_path / "steady.db-wal"

        def write(rows: int) -> None:
            for _ in range(rows):
                with db.txn() as cur:
                    cur.execute("INSERT INTO t (body) VALUES (?)", ("x" * 3000,))

        # A reader holding its snapshot pins the log, as steady traffic does: nothing
        # can be copied past it, so ~16 MB of frames pile up whatever the write rate.
        reader = sqlite3.connect(tmp_path / "steady.db", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM t").fetchall()
        write(4000)
        reader.execute("COMMIT")
        reader.close()
        checkpointer = db._checkpointer
        assert checkpointer is not None

        def restarted() -> bool:
            db.execute("INSERT INTO t (body) VALUES ('wake')")  # commits wake the thread
            return checkpointer.restarts >= 1

        wait_for(restarted, timeout=20, what="the checkpointer to start the log over")
        size = wal.stat().st_size
        assert size > 1024 * 4096, "the log had outgrown its bound"
        write(500)  # ~2 MB: appended, the file would grow; from its start, it does not
        assert wal.stat().st_size == size
        assert db.select("SELECT COUNT(*) FROM t WHERE body <> 'wake'") == [(4500,)]
    finally:
        db.close()


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://qmtl:hunter2@db.internal:5433/graph?password=hunter2&sslmode=require",
        "postgres://qmtl:hunter2@db.internal:5433/graph",
        "postgresql://db.internal:5433/graph?password=hunter2",
    ],
)
def test_a_dsn_is_described_without_credentials(dsn: str) -> None:
    from qmtl.foundation.sqldb import describe_dsn

    assert describe_dsn(dsn) == "postgresql://db.internal:5433/graph"
