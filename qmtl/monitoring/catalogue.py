"""The metric catalogue: every metric QMTL promises, its type, labels and owner.

This is the contract of ``shared/design.md`` section 2 in code.  Alerts and dashboards
may only reference these names (plus recording rules and Prometheus' own ``up`` /
``process_*``), and the tests check that each owner process really registers them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "PROMETHEUS_BUILTINS", "MetricSpec", "metric_names"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    owner: str  # dagmanager | gateway | worldservice | sdk


_CONTEXT = ("node_id", "world_id", "execution_domain", "as_of", "partition")

CATALOGUE: tuple[MetricSpec, ...] = (
    MetricSpec("diff_duration_ms", "histogram", (), "dagmanager"),
    MetricSpec("diff_duration_ms_p95", "gauge", (), "dagmanager"),
    MetricSpec("diff_requests_total", "counter", (), "dagmanager"),
    MetricSpec("diff_failures_total", "counter", (), "dagmanager"),
    MetricSpec("queue_create_error_total", "counter", (), "dagmanager"),
    MetricSpec("sentinel_gap_count", "gauge", (), "dagmanager"),
    MetricSpec("orphan_queue_total", "gauge", (), "dagmanager"),
    MetricSpec("gc_last_run_timestamp", "gauge", (), "dagmanager"),
    MetricSpec("queue_lag_seconds", "gauge", ("topic",), "dagmanager"),
    MetricSpec("queue_lag_messages", "gauge", ("topic",), "dagmanager"),
    MetricSpec("queue_lag_threshold_seconds", "gauge", ("topic",), "dagmanager"),
    MetricSpec("kafka_breaker_open_total", "counter", (), "dagmanager"),
    MetricSpec("kafka_breaker_state", "gauge", (), "dagmanager"),
    MetricSpec("graphstore_breaker_open_total", "counter", (), "dagmanager"),
    MetricSpec("graphstore_breaker_state", "gauge", (), "dagmanager"),
    MetricSpec("dagclient_breaker_open_total", "counter", (), "gateway"),
    MetricSpec("dagclient_breaker_state", "gauge", (), "gateway"),
    MetricSpec("gateway_e2e_latency_ms", "histogram", (), "gateway"),
    MetricSpec("gateway_e2e_latency_p95", "gauge", (), "gateway"),
    MetricSpec("lost_requests_total", "counter", (), "gateway"),
    MetricSpec("controlbus_apply_ack_total", "counter", ("world_id", "phase"), "gateway"),
    MetricSpec("controlbus_apply_ack_latency_ms", "gauge", ("world_id", "phase"), "gateway"),
    MetricSpec(
        "world_apply_run_total", "counter", ("world_id", "run_id", "status"), "worldservice"
    ),
    MetricSpec(
        "world_apply_failure_total", "counter", ("world_id", "run_id", "stage"), "worldservice"
    ),
    MetricSpec("world_allocation_snapshot_stale_ratio", "gauge", ("world_id",), "worldservice"),
    MetricSpec("nodecache_resident_bytes", "gauge", ("node_id", "scope"), "sdk"),
    MetricSpec("cache_read_total", "counter", ("upstream_id", "interval"), "sdk"),
    MetricSpec("cache_last_read_timestamp", "gauge", ("upstream_id", "interval"), "sdk"),
    MetricSpec("backfill_last_timestamp", "gauge", ("node_id", "interval"), "sdk"),
    MetricSpec("backfill_jobs_in_progress", "gauge", (), "sdk"),
    MetricSpec("backfill_failure_total", "counter", ("node_id", "interval"), "sdk"),
    MetricSpec("backfill_retry_total", "counter", ("node_id", "interval"), "sdk"),
    MetricSpec("node_processed_total", "counter", ("node_id",), "sdk"),
    MetricSpec("node_process_duration_ms", "histogram", ("node_id",), "sdk"),
    MetricSpec("node_process_failure_total", "counter", ("node_id",), "sdk"),
    MetricSpec("cross_context_cache_hit_total", "counter", _CONTEXT, "sdk"),
    MetricSpec("event_recorder_errors_total", "counter", ("recorder",), "sdk"),
)

#: Series Prometheus and prometheus_client add by themselves.
PROMETHEUS_BUILTINS = frozenset({"up", "process_start_time_seconds"})


def metric_names() -> set[str]:
    """Every series name a query may use, including histogram suffixes."""
    names: set[str] = set()
    for spec in CATALOGUE:
        names.add(spec.name)
        if spec.kind == "histogram":
            names.update(f"{spec.name}_{s}" for s in ("bucket", "count", "sum"))
    return names
