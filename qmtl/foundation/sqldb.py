"""One SQL database handle for every QMTL store: SQLite (embedded) or PostgreSQL.

Stores write their SQL once with ``?`` placeholders and ``ON CONFLICT`` clauses both
engines understand; :meth:`SqlDatabase.txn` gives a locked transaction that commits on
success and rolls back on any error (PostgreSQL needs that after a failed statement).

    db = SqlDatabase.open("sqlite:state/gateway.db")      # or "postgresql://..."
    with db.txn() as cur:
        cur.execute(db.q("INSERT INTO t (a) VALUES (?)"), (1,))
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

__all__ = ["SqlDatabase"]


class SqlDatabase:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._lock = threading.Lock()
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
            # Fewer, larger automatic checkpoints; checkpoint() runs passive ones in between.
            self._conn.execute("PRAGMA wal_autocheckpoint=4000")
        elif spec.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.dialect = "postgresql"
            self._psycopg = psycopg
            self._conn = psycopg.connect(spec, connect_timeout=5)
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

    def _connection(self) -> Any:
        if self.dialect == "postgresql" and (self._conn.closed or self._conn.broken):
            self._conn = self._psycopg.connect(self.spec, connect_timeout=5)
        return self._conn

    @contextmanager
    def txn(self) -> Iterator[Any]:
        """One locked transaction: commit on success, roll back on any error."""
        with self._lock:
            conn = self._connection()
            cur = conn.cursor()
            try:
                yield cur
                conn.commit()
            except BaseException:
                with suppress(Exception):
                    conn.rollback()
                raise

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

    def ping(self) -> bool:
        with self.txn() as cur:
            cur.execute("SELECT 1")
            return bool(cur.fetchone()[0] == 1)

    def checkpoint(self) -> None:
        """Fold SQLite's WAL back into the database off the request path (no-op elsewhere)."""
        if self.dialect == "sqlite":
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def describe(self) -> str:
        if self.dialect == "sqlite":
            return f"sqlite:{self.path}"
        return "postgresql://…@" + self.spec.split("@")[-1]

    def close(self) -> None:
        with suppress(Exception):
            self._conn.close()
