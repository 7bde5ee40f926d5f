"""Graph store: which queue is bound to which node under which compute key.

One interface, two backends chosen by ``dagmanager.graph_store``: ``sqlite:PATH``
(embedded default) and ``postgresql://...`` (psycopg 3).  Both run the same SQL; only
placeholders and set lookups differ.  Each diff is committed in **one** transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Binding", "GraphStore", "PostgresGraphStore", "SqliteGraphStore", "open_graph_store"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS queue_bindings (
        queue TEXT PRIMARY KEY, node_id TEXT NOT NULL, compute_key TEXT NOT NULL,
        context TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL DEFAULT 'active')""",
    """CREATE TABLE IF NOT EXISTS strategies (
        strategy_id TEXT PRIMARY KEY, current_version TEXT NOT NULL,
        retired INTEGER NOT NULL DEFAULT 0, updated_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS strategy_versions (
        strategy_id TEXT NOT NULL, version TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (strategy_id, version))""",
    """CREATE TABLE IF NOT EXISTS version_queues (
        strategy_id TEXT NOT NULL, version TEXT NOT NULL, queue TEXT NOT NULL,
        PRIMARY KEY (strategy_id, version, queue))""",
    """CREATE TABLE IF NOT EXISTS sentinels (
        strategy_id TEXT NOT NULL, version TEXT NOT NULL, sentinel_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (strategy_id, version))""",
    """CREATE TABLE IF NOT EXISTS seen_queues (
        queue TEXT PRIMARY KEY, first_seen DOUBLE PRECISION NOT NULL)""",
)


@dataclass(frozen=True)
class Binding:
    queue: str
    node_id: str
    compute_key: str
    context: dict[str, str]
    created_at: float


class GraphStore:
    """Backend-neutral store; subclasses provide a connection and placeholder style."""

    placeholder = "?"
    dialect = "generic"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # -- backend hooks ---------------------------------------------------------------
    def _conn(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _lookup(self, cur: Any, queues: Sequence[str]) -> list[tuple[str, str, str]]:
        rows: list[tuple[str, str, str]] = []
        for start in range(0, len(queues), 900):
            chunk = queues[start : start + 900]
            marks = ",".join("?" * len(chunk))
            cur.execute(
                self._q(
                    "SELECT queue, compute_key, node_id FROM queue_bindings "
                    f"WHERE status = 'active' AND queue IN ({marks})"
                ),
                list(chunk),
            )
            rows.extend(cur.fetchall())
        return rows

    @contextmanager
    def _txn(self) -> Iterator[Any]:
        """One locked transaction: commit on success, roll back on any error."""
        with self._lock:
            conn = self._conn()
            cur = conn.cursor()
            try:
                yield cur
                conn.commit()
            except BaseException:
                with suppress(Exception):
                    conn.rollback()
                raise

    # -- API ---------------------------------------------------------------------------
    def initialize(self) -> None:
        with self._txn() as cur:
            for statement in SCHEMA:
                cur.execute(statement)

    def ping(self) -> bool:
        with self._txn() as cur:
            cur.execute("SELECT 1")
            return bool(cur.fetchone()[0] == 1)

    def binding_keys(self, queues: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(compute key, node id) of every given queue that is bound: the hot lookup of a diff."""
        with self._txn() as cur:
            return {queue: (key, node) for queue, key, node in self._lookup(cur, queues)}

    def binding(self, queue: str) -> Binding | None:
        rows = self._select(
            "SELECT queue, node_id, compute_key, context, created_at FROM queue_bindings WHERE queue = ?",
            (queue,),
        )
        if not rows:
            return None
        r = rows[0]
        return Binding(r[0], r[1], r[2], json.loads(r[3]), float(r[4]))

    def version_exists(self, strategy_id: str, version: str) -> bool:
        rows = self._select(
            "SELECT 1 FROM strategy_versions WHERE strategy_id = ? AND version = ?",
            (strategy_id, version),
        )
        return bool(rows)

    def commit_diff(
        self,
        strategy_id: str,
        version: str,
        new_bindings: Sequence[Binding],
        version_queues: Sequence[str] | None,
        now: float,
        *,
        sentinel_id: str | None = None,
    ) -> None:
        """Record a diff in one transaction: bindings, version, its queues and its sentinel."""
        with self._txn() as cur:
            if new_bindings:
                # One diff shares one context object: serialise it once, not per row.
                contexts = {
                    id(b.context): json.dumps(b.context, sort_keys=True) for b in new_bindings[:1]
                }
                cur.executemany(
                    self._q(
                        "INSERT INTO queue_bindings (queue, node_id, compute_key, context, created_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (queue) DO UPDATE SET "
                        "node_id = excluded.node_id, compute_key = excluded.compute_key, "
                        "context = excluded.context, created_at = excluded.created_at, status = 'active'"
                    ),
                    [
                        (
                            b.queue,
                            b.node_id,
                            b.compute_key,
                            contexts.get(id(b.context)) or json.dumps(b.context, sort_keys=True),
                            b.created_at,
                        )
                        for b in new_bindings
                    ],
                )
            if version_queues is not None:
                cur.execute(
                    self._q(
                        "INSERT INTO strategy_versions (strategy_id, version, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    (strategy_id, version, now),
                )
                cur.executemany(
                    self._q(
                        "INSERT INTO version_queues (strategy_id, version, queue) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    [(strategy_id, version, q) for q in version_queues],
                )
            cur.execute(
                self._q(
                    "INSERT INTO strategies (strategy_id, current_version, retired, updated_at) "
                    "VALUES (?, ?, 0, ?) ON CONFLICT (strategy_id) DO UPDATE SET "
                    "current_version = excluded.current_version, retired = 0, updated_at = excluded.updated_at"
                ),
                (strategy_id, version, now),
            )
            if sentinel_id is not None:
                cur.execute(
                    self._q(
                        "INSERT INTO sentinels (strategy_id, version, sentinel_id, created_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    (strategy_id, version, sentinel_id, now),
                )

    def checkpoint(self) -> None:
        """Housekeeping hook (SQLite folds its WAL back here, off the diff path)."""

    def record_sentinel(self, strategy_id: str, version: str, sentinel_id: str, now: float) -> None:
        with self._txn() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO sentinels (strategy_id, version, sentinel_id, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING"
                ),
                (strategy_id, version, sentinel_id, now),
            )

    def sentinel_gaps(self) -> list[tuple[str, str]]:
        """(strategy, version) pairs whose diff finished without a sentinel."""
        rows = self._select(
            "SELECT v.strategy_id, v.version FROM strategy_versions v LEFT JOIN sentinels s "
            "ON s.strategy_id = v.strategy_id AND s.version = v.version WHERE s.sentinel_id IS NULL "
            "ORDER BY v.strategy_id, v.version"
        )
        return [(r[0], r[1]) for r in rows]

    def active_queues(self) -> set[str]:
        """Queues emitted by a node of some live strategy's current version."""
        rows = self._select(
            "SELECT DISTINCT vq.queue FROM version_queues vq JOIN strategies s "
            "ON s.strategy_id = vq.strategy_id AND s.current_version = vq.version WHERE s.retired = 0"
        )
        return {r[0] for r in rows}

    def queue_ages(self) -> dict[str, float]:
        """Creation (or first-seen) time of every queue we know of."""
        created = {
            r[0]: float(r[1])
            for r in self._select(
                "SELECT queue, created_at FROM queue_bindings WHERE status = 'active'"
            )
        }
        for queue, first_seen in self._select("SELECT queue, first_seen FROM seen_queues"):
            created.setdefault(queue, float(first_seen))
        return created

    def note_seen(self, queues: Iterable[str], now: float) -> None:
        rows = [(q, now) for q in queues]
        if rows:
            with self._txn() as cur:
                cur.executemany(
                    self._q(
                        "INSERT INTO seen_queues (queue, first_seen) VALUES (?, ?) ON CONFLICT DO NOTHING"
                    ),
                    rows,
                )

    def mark_collected(self, queues: Sequence[str], status: str, now: float) -> None:
        """Record queues as dropped or archived: no longer bound, no longer orphans."""
        with self._txn() as cur:
            cur.executemany(
                self._q(
                    "INSERT INTO queue_bindings (queue, node_id, compute_key, context, created_at, status) "
                    "VALUES (?, '', '', '{}', ?, ?) ON CONFLICT (queue) DO UPDATE SET status = excluded.status"
                ),
                [(q, now, status) for q in queues],
            )
            cur.executemany(
                self._q("DELETE FROM seen_queues WHERE queue = ?"), [(q,) for q in queues]
            )

    def archived_queues(self) -> set[str]:
        return {
            r[0] for r in self._select("SELECT queue FROM queue_bindings WHERE status = 'archived'")
        }

    def retire_strategy(self, strategy_id: str) -> bool:
        with self._txn() as cur:
            cur.execute(
                self._q("UPDATE strategies SET retired = 1 WHERE strategy_id = ?"), (strategy_id,)
            )
            return bool(cur.rowcount > 0)

    def counts(self) -> dict[str, int]:
        def one(sql: str) -> int:
            return int(self._select(sql)[0][0])

        return {
            "queues": one("SELECT COUNT(*) FROM queue_bindings WHERE status = 'active'"),
            "strategies": one("SELECT COUNT(*) FROM strategies WHERE retired = 0"),
            "versions": one("SELECT COUNT(*) FROM strategy_versions"),
        }

    def _select(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._txn() as cur:
            cur.execute(self._q(sql), params)
            return [tuple(r) for r in cur.fetchall()]

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def describe(self) -> str:  # pragma: no cover - overridden
        return self.dialect


class SqliteGraphStore(GraphStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level="DEFERRED"
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        # Fewer, larger automatic checkpoints; housekeeping runs passive ones in between.
        self._connection.execute("PRAGMA wal_autocheckpoint=4000")

    def _conn(self) -> sqlite3.Connection:
        return self._connection

    def checkpoint(self) -> None:
        with self._lock:
            self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self._connection.close()

    def describe(self) -> str:
        return f"sqlite:{self.path}"


class PostgresGraphStore(GraphStore):
    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        import psycopg

        self.dsn = dsn
        self._psycopg = psycopg
        self._connection = psycopg.connect(dsn, connect_timeout=5)

    def _conn(self) -> Any:
        if self._connection.closed or self._connection.broken:
            self._connection = self._psycopg.connect(self.dsn, connect_timeout=5)
        return self._connection

    def _lookup(self, cur: Any, queues: Sequence[str]) -> list[tuple[str, str, str]]:
        # A join against unnest() stays linear; `= ANY(array)` degrades to a scan that
        # searches the whole array for every row once the table grows.
        cur.execute(
            "SELECT b.queue, b.compute_key, b.node_id FROM unnest(%s::text[]) AS q(queue) "
            "JOIN queue_bindings b ON b.queue = q.queue WHERE b.status = 'active'",
            (list(queues),),
        )
        return list(cur.fetchall())

    def close(self) -> None:
        self._connection.close()

    def describe(self) -> str:
        host = self.dsn.split("@")[-1]
        return f"postgresql://…@{host}"


def open_graph_store(spec: str) -> GraphStore:
    """``sqlite:PATH`` or ``postgresql://...``; anything else is a configuration error."""
    if spec.startswith("sqlite:"):
        store: GraphStore = SqliteGraphStore(spec.removeprefix("sqlite:") or ":memory:")
    elif spec.startswith(("postgresql://", "postgres://")):
        store = PostgresGraphStore(spec)
    else:
        raise ValueError(
            f"dagmanager.graph_store {spec!r} is not supported; use sqlite:PATH or postgresql://..."
        )
    store.initialize()
    return store


def timestamp() -> float:
    return time.time()
