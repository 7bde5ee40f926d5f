"""DAG Manager metrics, one module attribute per metric, named exactly like the metric.

Each collector is built from its catalogue entry (:mod:`qmtl.foundation.catalogue`);
importing this module registers the DAG Manager's series on the global registry, so
only the DAG Manager process imports it.
"""

from __future__ import annotations

from qmtl.foundation import metrics as m
from qmtl.foundation.crosscontext import cross_context_cache_hit_total
from qmtl.foundation.tracing import exemplar

__all__ = [
    "cross_context_cache_hit_total",
    "dagmanager_leader",
    "dagmanager_plan_cache_bytes",
    "dagmanager_plan_cache_entries",
    "diff_duration_ms",
    "diff_duration_ms_p95",
    "diff_duration_window",
    "diff_failures_total",
    "diff_requests_total",
    "gc_last_run_timestamp",
    "graphstore_breaker_open_total",
    "graphstore_breaker_state",
    "kafka_breaker_open_total",
    "kafka_breaker_state",
    "observe_diff",
    "orphan_queue_total",
    "queue_create_error_total",
    "queue_lag_messages",
    "queue_lag_seconds",
    "queue_lag_threshold_seconds",
    "sentinel_gap_count",
]

diff_duration_ms = m.create("diff_duration_ms")
diff_duration_window = m.QuantileWindow(300)
diff_duration_ms_p95 = m.bind_p95(m.create("diff_duration_ms_p95"), diff_duration_window)
diff_requests_total = m.create("diff_requests_total")
diff_failures_total = m.create("diff_failures_total")
queue_create_error_total = m.create("queue_create_error_total")
sentinel_gap_count = m.create("sentinel_gap_count")
orphan_queue_total = m.create("orphan_queue_total")
gc_last_run_timestamp = m.create("gc_last_run_timestamp")
queue_lag_seconds = m.create("queue_lag_seconds")
queue_lag_messages = m.create("queue_lag_messages")
queue_lag_threshold_seconds = m.create("queue_lag_threshold_seconds")
kafka_breaker_open_total = m.create("kafka_breaker_open_total")
kafka_breaker_state = m.create("kafka_breaker_state")
graphstore_breaker_open_total = m.create("graphstore_breaker_open_total")
graphstore_breaker_state = m.create("graphstore_breaker_state")
dagmanager_leader = m.create("dagmanager_leader")
dagmanager_plan_cache_entries = m.create("dagmanager_plan_cache_entries")
dagmanager_plan_cache_bytes = m.create("dagmanager_plan_cache_bytes")


def observe_diff(duration_ms: float, *, failed: bool) -> None:
    diff_requests_total.inc()
    if failed:
        diff_failures_total.inc()
    diff_duration_ms.observe(duration_ms, exemplar=exemplar())  # the Diff RPC's span
    diff_duration_window.observe(duration_ms)
