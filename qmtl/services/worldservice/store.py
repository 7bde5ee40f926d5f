"""WorldService persistence: worlds, allocations, apply runs and the promotion guard's state.

Shared by every WorldService replica (PostgreSQL in production): the per-world apply
lease (``qmtl_leases``), the runs and their stage, the SDK sources the guard reads and
the time the last cross-context hit was cleared all live here, not in one process.
"""

from __future__ import annotations

import json
import time
from typing import Any

from qmtl.foundation.sqldb import Leases, SqlDatabase
from qmtl.services.worldservice.models import Allocation, ApplyPlan, ApplyRun, GuardSource, World

__all__ = ["WorldStore"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS worlds (
        world_id TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL,
        active TEXT NOT NULL DEFAULT '[]')""",
    """CREATE TABLE IF NOT EXISTS allocations (
        world_id TEXT NOT NULL, strategy_id TEXT NOT NULL, weight DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (world_id, strategy_id))""",
    """CREATE TABLE IF NOT EXISTS apply_runs (
        run_id TEXT PRIMARY KEY, world_id TEXT NOT NULL, status TEXT NOT NULL, stage TEXT,
        error TEXT, plan TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION, owner TEXT)""",
    # Stores written before sources were kept per world had one row per URL
    # (guard_sources); it is still created and read once, into the table below.
    """CREATE TABLE IF NOT EXISTS guard_sources (
        url TEXT PRIMARY KEY, world_id TEXT NOT NULL, strategy_id TEXT NOT NULL,
        registered_at DOUBLE PRECISION NOT NULL, last_ok DOUBLE PRECISION NOT NULL,
        had_hits INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS guard_source_worlds (
        url TEXT NOT NULL, world_id TEXT NOT NULL, strategy_id TEXT NOT NULL,
        registered_at DOUBLE PRECISION NOT NULL, last_ok DOUBLE PRECISION NOT NULL,
        had_hits INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (url, world_id))""",
    """INSERT INTO guard_source_worlds
        SELECT url, world_id, strategy_id, registered_at, last_ok, had_hits FROM guard_sources WHERE true
        ON CONFLICT DO NOTHING""",
    "DELETE FROM guard_sources",
    """CREATE TABLE IF NOT EXISTS guard_state (
        name TEXT PRIMARY KEY, value DOUBLE PRECISION NOT NULL)""",
)


class WorldStore:
    def __init__(self, spec: str) -> None:
        self.db = SqlDatabase.open(spec)
        self.db.create(SCHEMA)
        self.leases = Leases(self.db)

    # -- worlds ---------------------------------------------------------------------------
    def create_world(self, world_id: str) -> bool:
        with self.db.txn() as cur:
            cur.execute(
                self.db.q(
                    "INSERT INTO worlds (world_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING"
                ),
                (world_id, time.time()),
            )
            return bool(cur.rowcount)

    def delete_world(self, world_id: str) -> bool:
        with self.db.txn() as cur:
            cur.execute(self.db.q("DELETE FROM allocations WHERE world_id = ?"), (world_id,))
            cur.execute(self.db.q("DELETE FROM worlds WHERE world_id = ?"), (world_id,))
            return bool(cur.rowcount)

    def world(self, world_id: str) -> World | None:
        rows = self.db.select(
            "SELECT world_id, created_at, active FROM worlds WHERE world_id = ?", (world_id,)
        )
        if not rows:
            return None
        return World(rows[0][0], rows[0][1], tuple(json.loads(rows[0][2])))

    def worlds(self) -> list[str]:
        return [r[0] for r in self.db.select("SELECT world_id FROM worlds ORDER BY world_id")]

    def set_active(self, world_id: str, active: list[str]) -> None:
        self.db.execute(
            "UPDATE worlds SET active = ? WHERE world_id = ?",
            (json.dumps(sorted(active)), world_id),
        )

    # -- allocations ----------------------------------------------------------------------
    def put_allocations(self, world_id: str, weights: dict[str, float], now: float) -> None:
        with self.db.txn() as cur:
            cur.executemany(
                self.db.q(
                    "INSERT INTO allocations (world_id, strategy_id, weight, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (world_id, strategy_id) DO UPDATE SET weight = excluded.weight, "
                    "updated_at = excluded.updated_at"
                ),
                [(world_id, s, w, now) for s, w in weights.items()],
            )

    def allocations(self, world_id: str | None = None) -> list[Allocation]:
        sql = "SELECT world_id, strategy_id, weight, updated_at FROM allocations"
        params: tuple[Any, ...] = ()
        if world_id is not None:
            sql += " WHERE world_id = ?"
            params = (world_id,)
        rows = self.db.select(sql + " ORDER BY world_id, strategy_id", params)
        return [Allocation(*r) for r in rows]

    # -- apply runs -----------------------------------------------------------------------
    def start_run(
        self, run_id: str, world_id: str, plan: ApplyPlan, now: float, owner: str
    ) -> None:
        self.db.execute(
            "INSERT INTO apply_runs (run_id, world_id, status, stage, plan, started_at, owner) "
            "VALUES (?, ?, 'running', 'freeze', ?, ?, ?)",
            (run_id, world_id, json.dumps(plan.as_dict(), sort_keys=True), now, owner),
        )

    def set_stage(self, run_id: str, stage: str) -> None:
        self.db.execute(
            "UPDATE apply_runs SET stage = ? WHERE run_id = ? AND status = 'running'",
            (stage, run_id),
        )

    def finish_run(self, run_id: str, status: str, stage: str | None, error: str | None) -> None:
        self.db.execute(
            "UPDATE apply_runs SET status = ?, stage = ?, error = ?, finished_at = ? "
            "WHERE run_id = ? AND status = 'running'",
            (status, stage, error, time.time(), run_id),
        )

    _RUN_COLUMNS = "run_id, world_id, status, stage, error, plan, started_at, finished_at, owner"

    @staticmethod
    def _run_of(row: tuple[Any, ...]) -> ApplyRun:
        run_id, world_id, status, stage, error, plan, started_at, finished_at, owner = row
        return ApplyRun(run_id, world_id, status, stage, error,
                        ApplyPlan.from_dict(json.loads(plan)), started_at, finished_at, owner)  # fmt: skip

    def running_runs(self) -> list[ApplyRun]:
        rows = self.db.select(
            f"SELECT {self._RUN_COLUMNS} FROM apply_runs WHERE status = 'running' "
            "ORDER BY started_at"
        )
        return [self._run_of(r) for r in rows]

    def run(self, run_id: str) -> ApplyRun | None:
        rows = self.db.select(f"SELECT {self._RUN_COLUMNS} FROM apply_runs WHERE run_id = ?",
                              (run_id,))  # fmt: skip
        return self._run_of(rows[0]) if rows else None

    # -- promotion guard ------------------------------------------------------------------
    def add_source(self, url: str, world_id: str, strategy_id: str, now: float) -> bool:
        """Read ``url`` for ``world_id`` (one process may submit to several worlds)."""
        with self.db.txn() as cur:
            cur.execute(
                self.db.q(
                    "INSERT INTO guard_source_worlds (url, world_id, strategy_id, registered_at, "
                    "last_ok) VALUES (?, ?, ?, ?, ?) ON CONFLICT (url, world_id) DO UPDATE SET "
                    "strategy_id = excluded.strategy_id, last_ok = excluded.last_ok"
                ),
                (url, world_id, strategy_id, now, now),
            )
            return bool(cur.rowcount)

    def sources(self) -> list[GuardSource]:
        rows = self.db.select(
            "SELECT url, world_id, strategy_id, registered_at, last_ok, had_hits "
            "FROM guard_source_worlds ORDER BY url, world_id"
        )
        return [GuardSource(u, w, s, at, ok, bool(hits)) for u, w, s, at, ok, hits in rows]

    def source_urls(self) -> int:
        """How many distinct URLs the guard reads."""
        return int(self.db.select("SELECT COUNT(DISTINCT url) FROM guard_source_worlds")[0][0])

    def source_seen(self, url: str, now: float, had_hits: bool) -> None:
        self.db.execute(
            "UPDATE guard_source_worlds SET last_ok = ?, had_hits = ? WHERE url = ?",
            (now, 1 if had_hits else 0, url),
        )

    def remove_source(self, url: str) -> bool:
        return self.db.execute("DELETE FROM guard_source_worlds WHERE url = ?", (url,)) > 0

    def state(self, name: str) -> float | None:
        rows = self.db.select("SELECT value FROM guard_state WHERE name = ?", (name,))
        return float(rows[0][0]) if rows else None

    def raise_state(self, name: str, value: float) -> None:
        """Keep the larger of the stored and the given value (times only move forward)."""
        with self.db.txn() as cur:
            cur.execute(
                self.db.q(
                    "INSERT INTO guard_state (name, value) VALUES (?, ?) ON CONFLICT (name) "
                    "DO UPDATE SET value = excluded.value WHERE guard_state.value < excluded.value"
                ),
                (name, value),
            )

    def ping(self) -> bool:
        return self.db.ping()

    def close(self) -> None:
        self.db.close()
