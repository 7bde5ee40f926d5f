"""Backfill: fetch a stream's history with retries and exponential backoff.

Metrics: ``backfill_jobs_in_progress`` while a job runs, ``backfill_retry_total`` for
every attempt after the first, ``backfill_failure_total`` for jobs that still fail after
the last retry, ``backfill_last_timestamp`` for the newest item of a completed job.
Log lines are logfmt (``backfill.start node_id=... interval=...``) so they can be
grepped and parsed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from qmtl.runtime.sdk import metrics

__all__ = ["BackfillEngine", "BackfillError"]

log = logging.getLogger("qmtl.backfill")


class BackfillError(RuntimeError):
    """A backfill job failed after all retries; ``__cause__`` is the last error."""


class BackfillEngine:
    def __init__(
        self,
        *,
        max_retries: int = 3,
        backoff_seconds: float = 0.5,
        backoff_factor: float = 2.0,
        max_backoff_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.backoff_factor = backoff_factor
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep = sleep

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return min(
            self.backoff_seconds * self.backoff_factor ** (retry - 1), self.max_backoff_seconds
        )

    def run(
        self,
        node: Any,
        start: float,
        end: float,
        fetch: Callable[[float, float], Iterable[tuple[float, Any]]] | None = None,
    ) -> list[tuple[float, Any]]:
        """Fetch ``[start, end)`` for ``node`` (default: its ``history_provider``)."""
        fetch = fetch or getattr(node, "history_provider", None)
        if fetch is None:
            raise BackfillError(f"node {node.name}: no history_provider to backfill from")
        node_id, interval = node.node_id, str(node.interval)
        metrics.observe_backfill_start(node_id, interval)
        log.info(
            "backfill.start node_id=%s interval=%s start=%s end=%s", node_id, interval, start, end
        )
        attempt = 0
        while True:
            attempt += 1
            try:
                rows = sorted(fetch(start, end), key=lambda item: item[0])
            except Exception as exc:
                if attempt > self.max_retries:
                    metrics.observe_backfill_failure(node_id, interval)
                    log.error(
                        "backfill.failed node_id=%s interval=%s attempts=%d error=%s: %s",
                        node_id, interval, attempt, type(exc).__name__, exc,
                    )  # fmt: skip
                    raise BackfillError(
                        f"backfill of {node.name} [{start}, {end}) failed after {attempt} attempts: {exc}"
                    ) from exc
                delay = self.delay(attempt)
                metrics.observe_backfill_retry(node_id, interval)
                log.warning(
                    "backfill.retry node_id=%s interval=%s attempt=%d delay=%.2fs error=%s: %s",
                    node_id, interval, attempt + 1, delay, type(exc).__name__, exc,
                )  # fmt: skip
                self._sleep(delay)
                continue
            last = rows[-1][0] if rows else start
            metrics.observe_backfill_complete(node_id, interval, last)
            log.info(
                "backfill.complete node_id=%s interval=%s rows=%d last_timestamp=%s attempts=%d",
                node_id, interval, len(rows), last, attempt,
            )  # fmt: skip
            return rows
