"""Orphan-queue garbage collection.

An orphan is a queue on the backend that no node of any live strategy's current
version emits (broker-internal topics excluded).  The DAG Manager records when it
created each queue, and when it first saw a queue it did not create, so ages are real
on a real broker.  Orphans older than TTL + grace are dropped or archived by policy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from qmtl.foundation.breaker import AsyncCircuitBreaker
from qmtl.foundation.config import DagManagerConfig
from qmtl.services.dagmanager import metrics
from qmtl.services.dagmanager.diff import guarded as _guarded
from qmtl.services.dagmanager.queues import QueueBackend, is_internal_topic
from qmtl.services.dagmanager.store import GraphStore

__all__ = ["GarbageCollector", "GcReport"]

log = logging.getLogger(__name__)


@dataclass
class GcReport:
    started_at: float
    finished_at: float = 0.0
    policy: str = "drop"
    observed: int = 0
    orphans: int = 0
    candidates: list[str] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class GarbageCollector:
    def __init__(
        self,
        store: GraphStore,
        queues: QueueBackend,
        config: DagManagerConfig,
        *,
        store_breaker: AsyncCircuitBreaker,
        queue_breaker: AsyncCircuitBreaker,
    ) -> None:
        self.store = store
        self.queues = queues
        self.config = config
        self.store_breaker = store_breaker
        self.queue_breaker = queue_breaker
        self.last_report: GcReport | None = None
        self.failed_runs = 0
        self.completed_runs = 0

    def sweep(self) -> GcReport:
        """One GC run; raises on backend failure (the loop logs and counts it)."""
        now = time.time()
        report = GcReport(started_at=now, policy=self.config.gc_policy)
        topics = _guarded(self.queue_breaker, "queue listing", self.queues.list)
        report.observed = len(topics)
        candidates = _guarded(self.store_breaker, "graph store", self.store.discard_live, topics)
        orphans = sorted(t for t in candidates if not is_internal_topic(t))
        ages = _guarded(self.store_breaker, "graph store", self.store.queue_ages, orphans)
        _guarded(
            self.store_breaker,
            "graph store",
            self.store.note_seen,
            [t for t in orphans if t not in ages],
            now,
        )
        limit = self.config.orphan_ttl_seconds + self.config.orphan_grace_seconds
        for topic in orphans:
            age = now - ages.get(topic, now)
            if age >= limit:
                report.candidates.append(topic)
            else:
                report.skipped.append(
                    {"queue": topic, "reason": f"within TTL + grace ({age:.0f}s < {limit:.0f}s)"}
                )
        if report.candidates:
            if self.config.gc_policy == "drop":
                outcome = _guarded(
                    self.queue_breaker, "queue deletion", self.queues.delete, report.candidates
                )
                for topic in report.candidates:
                    if outcome.get(topic):
                        report.skipped.append(
                            {"queue": topic, "reason": f"delete failed: {outcome[topic]}"}
                        )
                    else:
                        report.processed.append(topic)
            else:
                report.processed = list(report.candidates)
            status = "dropped" if self.config.gc_policy == "drop" else "archived"
            _guarded(
                self.store_breaker,
                "graph store",
                self.store.mark_collected,
                report.processed,
                status,
                now,
            )
        report.orphans = len(orphans) - len(report.processed)
        report.finished_at = time.time()
        metrics.orphan_queue_total.set(report.orphans)
        metrics.gc_last_run_timestamp.set(report.finished_at)
        self.last_report = report
        self.completed_runs += 1
        log.info(
            "gc run: observed=%d orphans=%d processed=%d skipped=%d",
            report.observed, report.orphans, len(report.processed), len(report.skipped),
        )  # fmt: skip
        return report
