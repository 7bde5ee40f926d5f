"""One SQL database handle for every QMTL store: SQLite (embedded) or PostgreSQL.

Stores write their SQL once with ``?`` placeholders and ``ON CONFLICT`` clauses both
engines understand; :meth:`SqlDatabase.txn` gives a transaction that commits on success
and rolls back on any error (PostgreSQL needs that after a failed statement).

SQLite: one connection per process, behind a lock (SQLite serialises writers anyway),
plus a checkpointer thread with its own connection that folds the write-ahead log back
into the database file.  Left to SQLite, that checkpoint (and its fsync) runs inside
whichever commit crosses the WAL threshold: a diff or a submission that happened to
be the unlucky one took 5-10 times its usual time.
PostgreSQL: a connection pool (psycopg_pool), so a slow query on one thread -- a GC
sweep, a diff waiting for its advisory lock -- never holds up a lease renewal or a
lookup on another.  :attr:`SqlDatabase.concurrency` says how many calls can run at once.
Every transaction (and the pool's health check of a connection) has a client-side
deadline, enforced by closing the connection's socket: see :class:`_Deadlines`.

    db = SqlDatabase.open("sqlite:state/gateway.db")      # or "postgresql://..."
    with db.txn() as cur:
        cur.execute(db.q("INSERT INTO t (a) VALUES (?)"), (1,))
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Leases", "SqlDatabase", "WouldBlock", "describe_dsn", "without_waiting"]

#: Set by :func:`without_waiting` (a caller on an event loop): a transaction that would
#: wait for the database raises :class:`WouldBlock` instead of waiting.
_no_wait: ContextVar[bool] = ContextVar("qmtl_sql_no_wait", default=False)


class WouldBlock(RuntimeError):
    """The database is busy (or remote) and the caller asked not to wait for it."""


@contextmanager
def without_waiting() -> Iterator[None]:
    """Within the block, transactions never wait: an event loop may run a small job on
    an embedded database inline, and fall back to a thread on :class:`WouldBlock`.

    SQLite: the connection's lock must be free at once (another thread's transaction
    holds it otherwise).  PostgreSQL: always :class:`WouldBlock` (a network round trip
    can take any time).  Whatever ran before the refusal must be safe to run again.
    """
    token = _no_wait.set(True)
    try:
        yield
    finally:
        _no_wait.reset(token)


log = logging.getLogger(__name__)

#: Advisory-lock stripes for :meth:`SqlDatabase.lock_keys`: enough to let unrelated work
#: run in parallel, few enough to stay far below PostgreSQL's per-transaction lock slots.
LOCK_STRIPES = 64
#: SQLite page cache per connection (KiB; SQLite's default is 2 MiB).  Queue names and
#: compute keys are hashes, so a diff's inserts land on pages all over the indexes; with
#: the default cache a 1,000-node diff re-read most of them from the OS.  It fills as the
#: database grows and is resident memory that a long-running DAG Manager keeps, so it
#: stays small.
SQLITE_CACHE_KIB = 8 * 1024
#: Pages of WAL after which a commit checkpoints by itself: only a backstop for a
#: checkpointer thread that cannot keep up (the thread normally runs long before).
SQLITE_BACKSTOP_PAGES = 16_000
#: Pages of WAL (16 MiB at 4 KiB) beyond which the checkpointer starts the log over.
SQLITE_RESTART_PAGES = 4_096
#: Unlocked copy-then-try rounds before the checkpointer waits for the database's lock
#: to start the log over (a writer that never lets go must not grow the log forever).
SQLITE_RESTART_ATTEMPTS = 20
#: Pause between those rounds: about one small write transaction.
RESTART_PAUSE_SECONDS = 0.001


#: Longest a PostgreSQL transaction may run before its connection is cut (seconds).
QUERY_DEADLINE_SECONDS = 30.0


@dataclass(eq=False)
class _Watch:
    fd: int
    deadline: float
    cut: bool = False


class _Deadlines:
    """Cuts off PostgreSQL calls that outlive their deadline by shutting their socket.

    A server that is stopped, or stuck in I/O, keeps its TCP connections open and never
    answers: its own ``statement_timeout`` cannot fire, the kernel keeps acknowledging,
    and the calling thread would wait forever -- holding a pooled connection and, in the
    Gateway, the only thread of the submission log, so no breaker ever saw a failure.
    Shutting the socket down makes libpq's wait return with an error at once; the pool
    then throws that connection away.  One daemon thread per database, asleep until the
    earliest deadline.
    """

    def __init__(self) -> None:
        self._watched: set[_Watch] = set()
        self._changed = threading.Condition()
        self._wake_at = float("inf")
        self._thread: threading.Thread | None = None
        self._closing = False
        #: Calls cut off so far.
        self.cut = 0

    def start(self, fd: int, seconds: float) -> _Watch:
        watch = _Watch(fd, time.monotonic() + seconds)
        with self._changed:
            self._watched.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sql-deadlines", daemon=True)
                self._thread.start()
            elif watch.deadline < self._wake_at:
                self._changed.notify()
        return watch

    def stop(self, watch: _Watch) -> None:
        with self._changed:
            self._watched.discard(watch)

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while not self._closing:
                now = time.monotonic()
                for watch in [w for w in self._watched if w.deadline <= now]:
                    self._watched.discard(watch)
                    watch.cut = True
                    self.cut += 1
                    with suppress(OSError):  # already closed: nothing left to cut
                        sock = socket.socket(fileno=watch.fd)
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        finally:
                            sock.detach()  # the fd stays libpq's
                self._wake_at = min((w.deadline for w in self._watched), default=float("inf"))
                self._changed.wait(None if self._wake_at == float("inf") else self._wake_at - now)


class _Checkpointer:
    """Folds SQLite's WAL back into the database off the commit path.

    A daemon thread with its own connection: woken after commits, it runs a PASSIVE
    checkpoint (never blocks writers or readers) at most once per ``interval`` seconds.
    The sqlite3 module releases the GIL while SQLite works, so commits and request
    handling carry on meanwhile.

    Under steady writes a passive checkpoint never finds the log fully copied at a moment
    no one writes, so SQLite never starts it over and the file only grows (a DAG
    Manager's log reached 25 times the bytes submitted).  Once the log is over
    :data:`SQLITE_RESTART_PAGES`, the thread starts it over with a RESTART checkpoint,
    which needs the database's lock.  Every writer waits while that lock is held, and
    copying frames and syncing the file can take as long as a large diff, so the copying
    happens first, unlocked, and the lock is taken only when it is free and no commit
    came in since the copy: under it the restart has nothing left to copy.  After
    :data:`SQLITE_RESTART_ATTEMPTS` rounds without such a moment it waits for the lock
    (writers then wait for what is left).  The next write starts at the top of the file,
    which keeps its size (SQLite's way; truncating it took the lock for longer still) up
    to ``journal_size_limit``, the backstop's size.  The bound counts frames in the log,
    not the file's bytes: a file that once grew stays that size while its log restarts.
    """

    def __init__(self, path: str, lock: threading.Lock, interval: float = 0.5) -> None:
        self.interval = interval
        #: (busy, frames in the log, frames checkpointed) of the last run, for tests.
        self.last: tuple[int, int, int] | None = None
        self.runs = 0
        self._conn = sqlite3.connect(path, check_same_thread=False)
        self._lock = lock
        #: Times the log was started over (it had outgrown its bound).
        self.restarts = 0
        #: Of those, the ones that had to wait for the lock (no free moment was found).
        self.forced_restarts = 0
        self._dirty = threading.Event()
        self._closing = False
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint:{path}", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        self._dirty.set()

    # Pragmas are read to the end (fetchall): a statement left on its row keeps a read
    # transaction open, and a checkpoint cannot copy frames committed after that read.
    def _checkpoint(self, mode: str) -> tuple[int, int, int]:
        ((busy, frames, copied),) = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        return int(busy), int(frames), int(copied)

    def _data_version(self) -> int:
        """Moves whenever another connection commits (SQLite's ``PRAGMA data_version``)."""
        ((version,),) = self._conn.execute("PRAGMA data_version").fetchall()
        return int(version)

    def _restart(self) -> None:
        for attempt in range(1, SQLITE_RESTART_ATTEMPTS + 1):
            forced = attempt == SQLITE_RESTART_ATTEMPTS
            before = self._data_version()
            _busy, frames, copied = self._checkpoint("PASSIVE")
            caught_up = frames == copied  # busy only says another checkpoint ran meanwhile
            if (caught_up or forced) and self._lock.acquire(blocking=forced):
                try:
                    if forced or self._data_version() == before:
                        self.restarts += self._checkpoint("RESTART")[0] == 0
                        self.forced_restarts += forced
                        return
                finally:
                    self._lock.release()
            time.sleep(RESTART_PAUSE_SECONDS)  # let the writer finish what it holds the lock for

    def _run(self) -> None:
        while True:
            self._dirty.wait()
            if self._closing:
                return
            self._dirty.clear()
            try:
                self.last = self._checkpoint("PASSIVE")
                self.runs += 1
                # Frames in the log, not the file's size: a restarted log reuses its file.
                if self.last[1] > SQLITE_RESTART_PAGES:
                    self._restart()
            except sqlite3.Error as exc:  # the next commit wakes us again
                log.warning("sqlite checkpoint failed: %s", exc)
            time.sleep(self.interval)  # coalesce: one checkpoint (and fsync) per interval

    def close(self) -> None:
        self._closing = True
        self._dirty.set()
        self._thread.join(timeout=self.interval + 5)
        with suppress(Exception):
            self._conn.close()


def describe_dsn(spec: str) -> str:
    """``postgresql://host:port/db``: a PostgreSQL DSN without user, password or options."""
    parts = urlsplit(spec)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{host}{port}{parts.path}"


class SqlDatabase:
    def __init__(
        self,
        spec: str,
        *,
        pool_size: int = 8,
        timeout: float = 5.0,
        query_deadline: float = QUERY_DEADLINE_SECONDS,
    ) -> None:
        self.spec = spec
        #: PostgreSQL: a transaction still running after this many seconds is cut off.
        self.query_deadline = query_deadline
        self._timeout = timeout
        self._deadlines = _Deadlines()
        self._lock = threading.Lock()
        self._pool: Any = None
        self._checkpointer: _Checkpointer | None = None
        #: How many transactions can run at once (callers size their worker threads by it).
        self.concurrency = 1
        if spec.startswith("sqlite:"):
            self.dialect = "sqlite"
            self.path = spec.removeprefix("sqlite:") or ":memory:"
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn: Any = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level="DEFERRED"
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            if self.path != ":memory:":
                self._conn.execute(f"PRAGMA wal_autocheckpoint={SQLITE_BACKSTOP_PAGES}")
                page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
                limit = SQLITE_BACKSTOP_PAGES * page_size
                self._conn.execute(f"PRAGMA journal_size_limit={limit}")
                self._checkpointer = _Checkpointer(self.path, self._lock)
        elif spec.startswith(("postgresql://", "postgres://")):
            import psycopg
            from psycopg_pool import ConnectionPool

            self.dialect = "postgresql"
            self._psycopg = psycopg
            # Fail like a connect would (fast, with the server's reason) instead of
            # waiting out the pool: probe once, then pool.
            psycopg.connect(spec, connect_timeout=max(1, round(timeout))).close()
            self._pool = ConnectionPool(
                spec, min_size=1, max_size=pool_size, timeout=timeout,
                kwargs={"connect_timeout": max(1, round(timeout))}, check=self._check_connection,
                open=True, name="qmtl",
            )  # fmt: skip
            self.concurrency = pool_size
        else:
            raise ValueError(
                f"database {spec!r} is not supported; use sqlite:PATH or postgresql://..."
            )

    @classmethod
    def open(cls, spec: str) -> SqlDatabase:
        return cls(spec)

    def q(self, sql: str) -> str:
        """``?`` placeholders in the dialect of this database."""
        return sql if self.dialect == "sqlite" else sql.replace("?", "%s")

    @contextmanager
    def txn(self) -> Iterator[Any]:
        """One transaction: commit on success, roll back on any error."""
        if self._pool is not None:
            if _no_wait.get():
                raise WouldBlock(f"{self.describe()} is a network round trip away")
            # getconn/putconn rather than the pool's context manager: its rollback on an
            # error would run after the deadline watch, free to wait on a hung server.
            conn = self._pool.getconn()
            watch = self._deadlines.start(conn.fileno(), self.query_deadline)
            try:
                try:
                    yield conn.cursor()
                    conn.commit()
                except BaseException:
                    with suppress(Exception):  # a cut socket fails this at once
                        conn.rollback()
                    raise
            except self._psycopg.Error:
                if watch.cut:
                    raise self._timed_out("transaction", self.query_deadline) from None
                raise
            finally:
                self._deadlines.stop(watch)
                self._pool.putconn(conn)
            return
        if not _no_wait.get():
            self._lock.acquire()
        elif not self._lock.acquire(blocking=False):
            raise WouldBlock(f"{self.describe()} is busy with another transaction")
        try:
            conn = self._conn
            cur = conn.cursor()
            try:
                yield cur
                conn.commit()
                if self._checkpointer is not None:
                    self._checkpointer.wake()
            except BaseException:
                with suppress(Exception):
                    conn.rollback()
                raise
        finally:
            self._lock.release()

    def _check_connection(self, conn: Any) -> None:
        """The pool's check of an idle connection before it is handed out, with a deadline
        (a hung server would otherwise hold ``getconn`` forever).  Half the pool timeout:
        the other half is left to open a fresh connection in its place."""
        seconds = min(self._timeout / 2, self.query_deadline)
        watch = self._deadlines.start(conn.fileno(), seconds)
        try:
            self._pool.check_connection(conn)  # the library's own check
        except self._psycopg.Error:
            if watch.cut:
                raise self._timed_out("connection check", seconds) from None
            raise
        finally:
            self._deadlines.stop(watch)

    def _timed_out(self, what: str, seconds: float) -> TimeoutError:
        return TimeoutError(
            f"PostgreSQL at {self.describe()} did not answer a {what} within {seconds:g} s; "
            "the connection was dropped. Check that the server is running and not stuck "
            "(disk, locks); the call can be retried"
        )

    def lock_keys(self, cur: Any, keys: Sequence[str]) -> None:
        """Serialise, across processes, transactions that touch the same ``keys``.

        PostgreSQL: transaction-scoped advisory locks on the keys' stripes, taken in
        order (no deadlocks), released at commit or rollback.  SQLite: nothing to do;
        one connection per process behind a lock, and replicas need PostgreSQL.
        """
        if self.dialect != "postgresql" or not keys:
            return
        cur.execute(
            "SELECT pg_advisory_xact_lock(7151, s) FROM (SELECT DISTINCT "
            f"(hashtext(k) & {LOCK_STRIPES - 1}) AS s FROM unnest(%b::text[]) AS t(k) "
            "ORDER BY s) x",
            (list(keys),),
        )

    def write_mark(self, cur: Any) -> tuple[int, int] | None:
        """A token that changes whenever a write is committed to this database, by anyone.

        SQLite: this connection's change count plus ``PRAGMA data_version`` (which moves
        when another connection commits), read inside ``cur``'s transaction.  Equal
        tokens mean nothing was written in between, so what was read then still holds.
        PostgreSQL: ``None`` (unknown; other replicas write all the time).
        """
        if self.dialect != "sqlite":
            return None
        cur.execute("PRAGMA data_version")
        return (self._conn.total_changes, int(cur.fetchone()[0]))

    def select(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.txn() as cur:
            cur.execute(self.q(sql), params)
            return [tuple(r) for r in cur.fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.txn() as cur:
            cur.execute(self.q(sql), params)
            return int(cur.rowcount)

    def create(self, statements: Sequence[str]) -> None:
        with self.txn() as cur:
            for statement in statements:
                cur.execute(statement)

    def add_column(self, table: str, column: str, sql_type: str) -> None:
        """Add ``column`` to ``table`` unless it is there (stores created by older versions).

        PostgreSQL says ``IF NOT EXISTS`` itself, so replicas starting together do not
        race; SQLite has one writer per file and is asked first.
        """
        with self.txn() as cur:
            if self.dialect == "postgresql":
                cur.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {sql_type}")
                return
            cur.execute(f"PRAGMA table_info({table})")
            if column not in {row[1] for row in cur.fetchall()}:
                cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")

    def ping(self) -> bool:
        with self.txn() as cur:
            cur.execute("SELECT 1")
            return bool(cur.fetchone()[0] == 1)

    def checkpoint(self) -> None:
        """Ask for a WAL checkpoint now (SQLite; no-op elsewhere); it runs on its own thread."""
        if self._checkpointer is not None:
            self._checkpointer.wake()

    def describe(self) -> str:
        """Where the data lives, for /status and logs: never a credential (a DSN can carry
        one in its user part and in ``?password=``)."""
        if self.dialect == "sqlite":
            return f"sqlite:{self.path}"
        return describe_dsn(self.spec)

    def close(self) -> None:
        self._deadlines.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        with suppress(Exception):
            if self._pool is not None:
                self._pool.close()
            else:
                self._conn.close()


class Leases:
    """Named leases in a shared database: who owns a singleton job, until when.

    Replicas of a service call :meth:`acquire` periodically; the owner renews, the
    others get ``False`` until the owner stops renewing and the lease expires, then one
    of them takes over.  One atomic upsert per call, the same SQL on SQLite and
    PostgreSQL.  Times are the replicas' wall clocks (keep them NTP-synchronised).
    """

    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS qmtl_leases (
            name TEXT PRIMARY KEY, owner TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL)""",
    )

    def __init__(self, db: SqlDatabase) -> None:
        self.db = db
        db.create(self.SCHEMA)

    def acquire(self, name: str, owner: str, ttl: float, now: float | None = None) -> bool:
        """Take or renew ``name`` for ``ttl`` seconds; False while someone else holds it."""
        now = time.time() if now is None else now
        with self.db.txn() as cur:
            cur.execute(
                self.db.q(
                    "INSERT INTO qmtl_leases (name, owner, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                    "expires_at = excluded.expires_at "
                    "WHERE qmtl_leases.owner = excluded.owner OR qmtl_leases.expires_at < ?"
                ),
                (name, owner, now + ttl, now),
            )
            return bool(cur.rowcount == 1)

    def renew(self, name: str, owner: str, ttl: float, now: float | None = None) -> bool:
        """Extend ``name`` while ``owner`` still holds it; False once released or taken over.

        A heartbeat must renew, never :meth:`acquire`: a renewal racing the owner's own
        release would otherwise take the lease again and hold it for a whole ``ttl``.
        """
        now = time.time() if now is None else now
        with self.db.txn() as cur:
            cur.execute(
                self.db.q("UPDATE qmtl_leases SET expires_at = ? WHERE name = ? AND owner = ?"),
                (now + ttl, name, owner),
            )
            return bool(cur.rowcount == 1)

    def release(self, name: str, owner: str) -> None:
        self.db.execute("DELETE FROM qmtl_leases WHERE name = ? AND owner = ?", (name, owner))

    def holder(self, name: str, now: float | None = None) -> str | None:
        """The live owner of ``name``, or None when free or expired."""
        now = time.time() if now is None else now
        rows = self.db.select(
            "SELECT owner FROM qmtl_leases WHERE name = ? AND expires_at >= ?", (name, now)
        )
        return str(rows[0][0]) if rows else None
