"""WorldService persistence: worlds, allocation snapshots and apply runs."""

from __future__ import annotations

import json
import time
from typing import Any

from qmtl.foundation.sqldb import SqlDatabase

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
        finished_at DOUBLE PRECISION)""",
)


class WorldStore:
    def __init__(self, spec: str) -> None:
        self.db = SqlDatabase.open(spec)
        self.db.create(SCHEMA)

    def create_world(self, world_id: str) -> bool:
        with self.db.txn() as cur:
            cur.execute(
                self.db.q(
                    "INSERT INTO worlds (world_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING"
                ),
                (world_id, time.time()),
            )
            return bool(cur.rowcount)

    def world(self, world_id: str) -> dict[str, Any] | None:
        rows = self.db.select(
            "SELECT world_id, created_at, active FROM worlds WHERE world_id = ?", (world_id,)
        )
        if not rows:
            return None
        return {"world_id": rows[0][0], "created_at": rows[0][1], "active": json.loads(rows[0][2])}

    def worlds(self) -> list[str]:
        return [r[0] for r in self.db.select("SELECT world_id FROM worlds ORDER BY world_id")]

    def set_active(self, world_id: str, active: list[str]) -> None:
        self.db.execute(
            "UPDATE worlds SET active = ? WHERE world_id = ?",
            (json.dumps(sorted(active)), world_id),
        )

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

    def allocations(self, world_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT world_id, strategy_id, weight, updated_at FROM allocations"
        params: tuple[Any, ...] = ()
        if world_id is not None:
            sql += " WHERE world_id = ?"
            params = (world_id,)
        rows = self.db.select(sql + " ORDER BY world_id, strategy_id", params)
        return [
            {"world_id": r[0], "strategy_id": r[1], "weight": r[2], "updated_at": r[3]}
            for r in rows
        ]

    def start_run(self, run_id: str, world_id: str, plan: dict[str, Any], now: float) -> None:
        self.db.execute(
            "INSERT INTO apply_runs (run_id, world_id, status, plan, started_at) VALUES (?, ?, 'running', ?, ?)",
            (run_id, world_id, json.dumps(plan, sort_keys=True), now),
        )

    def finish_run(self, run_id: str, status: str, stage: str | None, error: str | None) -> None:
        self.db.execute(
            "UPDATE apply_runs SET status = ?, stage = ?, error = ?, finished_at = ? WHERE run_id = ?",
            (status, stage, error, time.time(), run_id),
        )

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self.db.select(
            "SELECT run_id, world_id, status, stage, error, plan, started_at, finished_at FROM apply_runs WHERE run_id = ?",
            (run_id,),
        )
        if not rows:
            return None
        r = rows[0]
        keys = (
            "run_id",
            "world_id",
            "status",
            "stage",
            "error",
            "plan",
            "started_at",
            "finished_at",
        )
        run = dict(zip(keys, r, strict=True))
        run["plan"] = json.loads(run["plan"])
        return run

    def close(self) -> None:
        self.db.close()
