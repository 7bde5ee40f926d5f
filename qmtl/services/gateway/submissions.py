"""Durable submission log: nothing the Gateway accepted is forgotten on a restart."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from qmtl.foundation.sqldb import SqlDatabase

__all__ = ["Submission", "SubmissionLog"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS submissions (
        submission_id TEXT PRIMARY KEY, strategy_id TEXT NOT NULL, request TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT,
        created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS submissions_status ON submissions (status, created_at)",
    "CREATE INDEX IF NOT EXISTS submissions_strategy ON submissions (strategy_id, created_at)",
)


@dataclass
class Submission:
    submission_id: str
    strategy_id: str
    request: dict[str, Any]
    status: str  # pending | completed | rejected | abandoned
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "submission_id": self.submission_id,
            "strategy_id": self.strategy_id,
            "status": self.status,
            "attempts": self.attempts,
            "result": self.result,
            "error": self.error,
            "world_id": self.request.get("world_id", ""),
        }


def _row(r: tuple[Any, ...]) -> Submission:
    return Submission(
        submission_id=r[0], strategy_id=r[1], request=json.loads(r[2]), status=r[3], attempts=int(r[4]),
        result=json.loads(r[5]) if r[5] else None, error=r[6], created_at=float(r[7]),
    )  # fmt: skip


_COLUMNS = "submission_id, strategy_id, request, status, attempts, result, error, created_at"


class SubmissionLog:
    def __init__(self, spec: str) -> None:
        self.db = SqlDatabase.open(spec)
        self.db.create(SCHEMA)
        self.fail_writes = False  # fault injection: the disk or database refuses writes

    def insert(self, sub: Submission) -> Submission | None:
        """Write ``sub``; if that submission id exists already, return the stored one instead."""
        if self.fail_writes:
            raise OSError("submission log write refused (fault injection: log_write_fail)")
        now = time.time()
        row = (
            sub.submission_id,
            sub.strategy_id,
            json.dumps(sub.request, sort_keys=True),
            sub.status,
            now,
            now,
        )
        inserted = self.db.execute(
            f"INSERT INTO submissions ({_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, 0, NULL, NULL, ?, ?) "
            "ON CONFLICT (submission_id) DO NOTHING",
            row,
        )
        return None if inserted else self.get(sub.submission_id)

    def get(self, submission_id: str) -> Submission | None:
        rows = self.db.select(
            f"SELECT {_COLUMNS} FROM submissions WHERE submission_id = ?", (submission_id,)
        )
        return _row(rows[0]) if rows else None

    def latest_for(self, strategy_id: str) -> Submission | None:
        rows = self.db.select(
            f"SELECT {_COLUMNS} FROM submissions WHERE strategy_id = ? ORDER BY created_at DESC LIMIT 1",
            (strategy_id,),
        )
        return _row(rows[0]) if rows else None

    def pending(self, limit: int = 100) -> list[Submission]:
        rows = self.db.select(
            f"SELECT {_COLUMNS} FROM submissions WHERE status = 'pending' ORDER BY created_at LIMIT ?",
            (limit,),
        )
        return [_row(r) for r in rows]

    def update(self, submission_id: str, status: str, *, result: dict[str, Any] | None = None,
               error: str | None = None, attempt: bool = False) -> None:  # fmt: skip
        self.db.execute(
            "UPDATE submissions SET status = ?, result = ?, error = ?, attempts = attempts + ?, updated_at = ? "
            "WHERE submission_id = ?",
            (status, json.dumps(result) if result is not None else None, error, 1 if attempt else 0, time.time(),
             submission_id),
        )  # fmt: skip

    def counts(self) -> dict[str, int]:
        return {
            r[0]: int(r[1])
            for r in self.db.select("SELECT status, COUNT(*) FROM submissions GROUP BY status")
        }

    def close(self) -> None:
        self.db.close()
