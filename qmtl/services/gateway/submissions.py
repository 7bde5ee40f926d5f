"""Durable submission log: nothing a Gateway accepted is forgotten, nothing is done twice.

Every row is ``pending`` until it ends ``completed``, ``rejected`` or ``abandoned``.
A pending row carries a lease (``lease_owner``, ``lease_until``): the replica that
inserted or claimed it works on it, and no other replica touches it until the lease
has run out -- in-flight submissions are never retried behind their owner's back.
After a failed attempt the holder keeps the row and retries it first; if the holder
dies, its leases expire and any replica claims the work (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL).  Final states are written with ``WHERE status = 'pending'``: a stored
result is never replaced, whoever finishes second.

A replica that dies does not make its rows wait out their lease: every replica holds a
short liveness lease (``gateway:<instance>`` in ``qmtl_leases``, renewed while it runs),
and a row whose owner has no live liveness lease is claimable at once.  A diff run again
that way returns what its first run would have (the DAG Manager counts the bindings of
a submission as its own), so taking over early never changes an answer.

An ``abandoned`` row (attempts exhausted while a dependency was down) is not the end of
the submission: the same body submitted again starts it afresh.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qmtl.foundation.contracts import DiffResult, SubmissionRequest
from qmtl.foundation.sqldb import Leases, SqlDatabase

__all__ = ["FINAL", "LIVENESS_PREFIX", "Submission", "SubmissionLog"]

FINAL = ("completed", "rejected", "abandoned")
#: ``qmtl_leases`` name of a Gateway replica's liveness lease: prefix + instance id.
LIVENESS_PREFIX = "gateway:"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS gateway_submissions (
        submission_id TEXT PRIMARY KEY, strategy_id TEXT NOT NULL, world_id TEXT NOT NULL,
        request TEXT NOT NULL, dag_json TEXT NOT NULL, status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT, error_code TEXT,
        lease_owner TEXT, lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS gateway_submissions_due ON gateway_submissions (status, lease_until)",
    "CREATE INDEX IF NOT EXISTS gateway_submissions_strategy "
    "ON gateway_submissions (strategy_id, created_at)",
)
_COLUMNS = (
    "submission_id, strategy_id, request, dag_json, status, attempts, result, error, "
    "error_code, created_at, lease_owner"
)


@dataclass
class Submission:
    submission_id: str
    request: SubmissionRequest
    status: str  # pending | completed | rejected | abandoned
    attempts: int = 0
    result: DiffResult | None = None
    error: str | None = None
    error_code: str | None = None
    created_at: float = 0.0
    lease_owner: str | None = None

    @property
    def strategy_id(self) -> str:
        return self.request.strategy_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "submission_id": self.submission_id,
            "strategy_id": self.strategy_id,
            "world_id": self.request.world_id,
            "status": self.status,
            "attempts": self.attempts,
            "result": self.result.to_dict() if self.result else None,
            "error": self.error,
            "error_code": self.error_code,
        }


def _row(r: tuple[Any, ...]) -> Submission:
    meta = json.loads(r[2])
    request = SubmissionRequest.from_dict({**meta, "dag_json": r[3]})
    return Submission(
        submission_id=r[0], request=request, status=r[4], attempts=int(r[5]),
        result=DiffResult.from_dict(json.loads(r[6])) if r[6] else None, error=r[7],
        error_code=r[8], created_at=float(r[9]), lease_owner=r[10],
    )  # fmt: skip


class SubmissionLog:
    def __init__(self, spec: str, *, clock: Callable[[], float] = time.time) -> None:
        #: Wall-clock time of leases and retry deadlines (tests pass a clock they move).
        self.clock = clock
        self.db = SqlDatabase.open(spec)
        self.db.create(SCHEMA)
        self.leases = Leases(self.db)

    def alive(self, owner: str, ttl: float) -> None:
        """Take or renew ``owner``'s liveness lease for ``ttl`` seconds."""
        self.leases.acquire(LIVENESS_PREFIX + owner, owner, ttl)

    def gone(self, owner: str) -> None:
        """A clean stop: ``owner``'s rows are claimable at once."""
        self.leases.release(LIVENESS_PREFIX + owner, owner)

    def insert(self, sub: Submission, owner: str, lease_seconds: float) -> Submission | None:
        """Log ``sub`` leased to ``owner``; if its id exists already, return the stored one.

        An abandoned row of the same id is taken back to ``pending`` (attempts from zero):
        its cause may be gone, and the client's new attempt is the sign to try again.
        """
        now = self.clock()
        meta = sub.request.to_dict()
        dag_json = meta.pop("dag_json")
        inserted = self.db.execute(
            "INSERT INTO gateway_submissions (submission_id, strategy_id, world_id, request, "
            "dag_json, status, attempts, lease_owner, lease_until, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?) "
            "ON CONFLICT (submission_id) DO UPDATE SET status = 'pending', attempts = 0, "
            "error = NULL, error_code = NULL, lease_owner = excluded.lease_owner, "
            "lease_until = excluded.lease_until, updated_at = excluded.updated_at "
            "WHERE gateway_submissions.status = 'abandoned'",
            (
                sub.submission_id, sub.strategy_id, sub.request.world_id,
                json.dumps(meta, sort_keys=True), dag_json, owner, now + lease_seconds, now, now,
            ),
        )  # fmt: skip
        return None if inserted else self.get(sub.submission_id)

    def get(self, submission_id: str) -> Submission | None:
        rows = self.db.select(
            f"SELECT {_COLUMNS} FROM gateway_submissions WHERE submission_id = ?",
            (submission_id,),
        )
        return _row(rows[0]) if rows else None

    def latest_for(self, strategy_id: str) -> Submission | None:
        rows = self.db.select(
            f"SELECT {_COLUMNS} FROM gateway_submissions WHERE strategy_id = ? "
            "ORDER BY created_at DESC LIMIT 1",
            (strategy_id,),
        )
        return _row(rows[0]) if rows else None

    def claim(
        self,
        owner: str,
        lease_seconds: float,
        *,
        grace: float,
        limit: int = 100,
        now: float | None = None,
    ) -> list[Submission]:
        """Lease pending rows that are due: ours whose retry time came, anyone's expired,
        or any row of a replica that is not alive.

        A live replica's row becomes claimable only ``grace`` seconds after its lease ran
        out, so a live holder always retries its own rows first; a replica without a live
        liveness lease (dead, or stopped) holds nothing.
        """
        now = self.clock() if now is None else now
        until = now + lease_seconds
        due = (
            "status = 'pending' AND ((lease_owner = ? AND lease_until < ?) "
            "OR lease_until < ? OR lease_owner IS NULL OR (lease_owner <> ? AND NOT EXISTS ("
            "SELECT 1 FROM qmtl_leases WHERE qmtl_leases.name = ? || lease_owner "
            "AND qmtl_leases.expires_at >= ?)))"
        )
        params = (owner, now, now - grace, owner, LIVENESS_PREFIX, now)
        if self.db.dialect == "postgresql":
            sql = (
                f"UPDATE gateway_submissions SET lease_owner = %s, lease_until = %s "
                f"WHERE submission_id IN (SELECT submission_id FROM gateway_submissions "
                f"WHERE {due.replace('?', '%s')} ORDER BY created_at LIMIT %s "
                f"FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}"
            )
        else:
            sql = (
                f"UPDATE gateway_submissions SET lease_owner = ?, lease_until = ? "
                f"WHERE submission_id IN (SELECT submission_id FROM gateway_submissions "
                f"WHERE {due} ORDER BY created_at LIMIT ?) RETURNING {_COLUMNS}"
            )
        with self.db.txn() as cur:
            cur.execute(sql, (owner, until, *params, limit))
            rows = cur.fetchall()
        return sorted((_row(tuple(r)) for r in rows), key=lambda s: s.created_at)

    def _finish(self, submission_id: str, sets: str, params: tuple[Any, ...]) -> bool:
        return (
            self.db.execute(
                f"UPDATE gateway_submissions SET {sets}, lease_owner = NULL, updated_at = ? "
                "WHERE submission_id = ? AND status = 'pending'",
                (*params, self.clock(), submission_id),
            )
            == 1
        )

    def complete(self, submission_id: str, result: DiffResult) -> bool:
        """Store the result; False when the row was already final (the result is kept)."""
        return self._finish(
            submission_id,
            "status = 'completed', result = ?, error = NULL, attempts = attempts + 1",
            (json.dumps(result.to_dict()),),
        )

    def reject(self, submission_id: str, code: str, message: str) -> bool:
        return self._finish(
            submission_id,
            "status = 'rejected', error = ?, error_code = ?, attempts = attempts + 1",
            (message, code),
        )

    def abandon(self, submission_id: str, message: str) -> bool:
        return self._finish(submission_id, "status = 'abandoned', error = ?", (message,))

    def retry_later(self, submission_id: str, owner: str, message: str, retry_in: float) -> None:
        """A failed attempt: keep the lease, count the attempt, come back in ``retry_in`` s."""
        self.db.execute(
            "UPDATE gateway_submissions SET attempts = attempts + 1, error = ?, lease_owner = ?, "
            "lease_until = ?, updated_at = ? WHERE submission_id = ? AND status = 'pending'",
            (message, owner, self.clock() + retry_in, self.clock(), submission_id),
        )

    def due_now(self, submission_ids: list[str], owner: str) -> int:
        """Make these pending rows of ``owner`` due at once (their retry could not be
        recorded: their lease would otherwise hold them back until it runs out)."""
        if not submission_ids:
            return 0
        marks = ", ".join("?" * len(submission_ids))
        return self.db.execute(
            f"UPDATE gateway_submissions SET lease_until = 0 WHERE submission_id IN ({marks}) "
            "AND lease_owner = ? AND status = 'pending'",
            (*submission_ids, owner),
        )

    def reclaim_own(self, owner: str) -> int:
        """After a restart: our leases cannot be in flight any more; make them due now."""
        return self.db.execute(
            "UPDATE gateway_submissions SET lease_until = 0 "
            "WHERE lease_owner = ? AND status = 'pending'",
            (owner,),
        )

    def pending(self) -> int:
        """Submissions waiting to be finished (in flight or for a retry)."""
        return int(
            self.db.select("SELECT COUNT(*) FROM gateway_submissions WHERE status = 'pending'")[0][
                0
            ]
        )

    def counts(self) -> dict[str, int]:
        return {
            r[0]: int(r[1])
            for r in self.db.select(
                "SELECT status, COUNT(*) FROM gateway_submissions GROUP BY status"
            )
        }

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @property
    def local(self) -> bool:
        """Whether the log is an embedded file (no network between us and a commit)."""
        return self.db.dialect == "sqlite"

    @property
    def concurrency(self) -> int:
        """How many calls can run at once: PostgreSQL's pool size, 1 for SQLite."""
        return self.db.concurrency

    def ping(self) -> bool:
        return self.db.ping()

    def describe(self) -> str:
        return self.db.describe()

    def close(self) -> None:
        self.db.close()
