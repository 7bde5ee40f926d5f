"""The metric catalogue: every metric QMTL promises, its type, labels, help and owners.

Every name here is a public contract (alerts, dashboards, runbooks and users' own
queries rely on it), and this is the only place a
collector is described: :func:`qmtl.foundation.metrics.create` builds each one from its
entry here, exactly once per process (a second registration raises, as
prometheus_client does).  Alerts and dashboards may only reference these names (plus
recording rules and Prometheus' own ``up`` / ``process_*``), and a test checks each
owner process really exposes every entry it owns, with this type and these labels.

Pure data, no imports from the rest of QMTL: every layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CATALOGUE",
    "CONTEXT_LABELS",
    "PROMETHEUS_BUILTINS",
    "MetricSpec",
    "metric_names",
    "owned_by",
    "spec",
]

#: The five compute-context labels of cross_context_cache_hit_total, in order.
CONTEXT_LABELS = ("node_id", "world_id", "execution_domain", "as_of", "partition")
#: Millisecond buckets that straddle every latency alert threshold (150, 200, 500 ms, 5 s).
MS_BUCKETS: tuple[float, ...] = (
    1, 2.5, 5, 10, 25, 50, 100, 150, 200, 250, 500, 1000, 2500, 5000, 10000,
)  # fmt: skip


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    owners: tuple[str, ...]  # dagmanager | gateway | worldservice | sdk | any
    help: str
    #: Labels whose values come from clients; they are bounded (``__other__`` past a cap).
    free_labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = MS_BUCKETS

    @property
    def owner(self) -> str:
        return self.owners[0]


def _m(
    name: str,
    kind: str,
    labels: tuple[str, ...],
    owners: str | tuple[str, ...],
    help: str,
    free: tuple[str, ...] = (),
) -> MetricSpec:
    return MetricSpec(
        name, kind, labels, (owners,) if isinstance(owners, str) else owners, help, free
    )


_DM, _GW, _WS, _SDK = "dagmanager", "gateway", "worldservice", "sdk"
_ALL = (_DM, _GW, _WS, _SDK)

CATALOGUE: tuple[MetricSpec, ...] = (
    # ------------------------------------------------------------------ DAG Manager
    _m("diff_duration_ms", "histogram", (), _DM, "Wall time of each DAG diff, success or failure (ms)."),
    _m("diff_duration_ms_p95", "gauge", (), _DM, "p95 of diffs finished in the last 5 minutes (ms); NaN when none."),
    _m("diff_requests_total", "counter", (), _DM, "Diff requests processed, success and failure."),
    _m("diff_failures_total", "counter", (), _DM, "Diff requests that failed."),
    _m("queue_create_error_total", "counter", (), _DM, "Queue (topic) creation failures."),
    _m("sentinel_gap_count", "gauge", (), _DM, "Strategy versions whose diff finished without their sentinel recorded."),
    _m("orphan_queue_total", "gauge", (), _DM, "Queues no node emits, at the last GC run."),
    _m("gc_last_run_timestamp", "gauge", (), _DM, "Unix time of the last completed GC run."),
    _m("queue_lag_seconds", "gauge", ("topic",), _DM, "Age in seconds of the oldest unconsumed message (0 when caught up)."),
    _m("queue_lag_messages", "gauge", ("topic",), _DM, "Offset lag: high watermark - committed."),
    _m("queue_lag_threshold_seconds", "gauge", ("topic",), _DM, "Configured lag alert boundary per topic (s)."),
    _m("kafka_breaker_open_total", "counter", (), _DM, "Times the kafka circuit breaker opened."),
    _m("kafka_breaker_state", "gauge", (), _DM, "State of the kafka circuit breaker (1 open, 0 closed)."),
    _m("graphstore_breaker_open_total", "counter", (), _DM, "Times the graphstore circuit breaker opened."),
    _m("graphstore_breaker_state", "gauge", (), _DM, "State of the graphstore circuit breaker (1 open, 0 closed)."),
    _m("dagmanager_leader", "gauge", (), _DM, "1 on the replica that runs GC and the lag monitor, 0 on standbys."),
    _m("dagmanager_plan_cache_entries", "gauge", (), _DM, "Parsed diff plans held for re-submissions."),
    _m("dagmanager_plan_cache_bytes", "gauge", (), _DM, "Estimated bytes held by the diff plan cache."),
    # ------------------------------------------------------------------ Gateway
    _m("dagclient_breaker_open_total", "counter", (), _GW, "Times the dagclient circuit breaker opened."),
    _m("dagclient_breaker_state", "gauge", (), _GW, "State of the dagclient circuit breaker (1 open, 0 closed)."),
    _m("gateway_e2e_latency_ms", "histogram", (), _GW, "Submission received -> acknowledged, every outcome (ms)."),
    _m("gateway_e2e_latency_p95", "gauge", (), _GW, "p95 submission latency over the last 5 minutes (ms); NaN when idle."),
    _m("gateway_submissions_total", "counter", ("code",), _GW, "Answers to POST /strategies by HTTP status code."),
    _m("lost_requests_total", "counter", (), _GW, "Submissions accepted but neither completed nor durably handed off."),
    _m("gateway_submissions_in_flight", "gauge", (), _GW, "Submissions being received or worked on right now (admission bound: gateway.max_in_flight_submissions)."),
    _m("controlbus_apply_ack_total", "counter", ("world_id", "phase"), _GW, "Freeze/unfreeze ACKs sent to the ControlBus.", ("world_id",)),
    _m("controlbus_apply_ack_latency_ms", "gauge", ("world_id", "phase"), _GW, "Latency of the latest ACK: event time -> ACK (ms).", ("world_id",)),
    _m("controlbus_apply_ack_latency_ms_hist", "histogram", ("phase",), _GW, "ACK latencies: event time -> ACK (ms)."),
    # ------------------------------------------------------------------ WorldService
    _m("world_apply_run_total", "counter", ("world_id", "run_id", "status"), _WS, "Apply runs by outcome (started, success, failure).", ("world_id",)),
    _m("world_apply_failure_total", "counter", ("world_id", "run_id", "stage"), _WS, "Failed apply runs by the stage that failed.", ("world_id",)),
    _m("world_allocation_snapshot_stale_ratio", "gauge", ("world_id",), _WS, "Share of the world's current allocation snapshots older than the freshness window.", ("world_id",)),
    _m("promotion_guard_unreachable_sources", "gauge", ("kind",), _WS, "Cross-context sources the promotion guard could not read at its last look (static: every world blocked; registered: their world)."),
    # ------------------------------------------------------------------ SDK
    _m("nodecache_resident_bytes", "gauge", ("node_id", "scope"), _SDK, "Bytes held by node caches."),
    _m("cache_read_total", "counter", ("upstream_id", "interval"), _SDK, "Cache reads by upstream and interval."),
    _m("cache_last_read_timestamp", "gauge", ("upstream_id", "interval"), _SDK, "Unix time of the latest cache read."),
    _m("backfill_last_timestamp", "gauge", ("node_id", "interval"), _SDK, "Latest timestamp successfully backfilled."),
    _m("backfill_jobs_in_progress", "gauge", (), _SDK, "Active backfill jobs."),
    _m("backfill_failure_total", "counter", ("node_id", "interval"), _SDK, "Backfill jobs that ultimately failed."),
    _m("backfill_retry_total", "counter", ("node_id", "interval"), _SDK, "Backfill retry attempts (attempts after the first)."),
    _m("node_processed_total", "counter", ("node_id",), _SDK, "Node compute executions."),
    _m("node_process_duration_ms", "histogram", ("node_id",), _SDK, "Duration of node compute execution (ms)."),
    _m("node_process_failure_total", "counter", ("node_id",), _SDK, "Node compute failures."),
    _m("event_recorder_errors_total", "counter", ("recorder",), _SDK, "Rows the event recorder failed to persist."),
    # ------------------------------------------------------------------ shared
    _m("cross_context_cache_hit_total", "counter", CONTEXT_LABELS, (_SDK, _DM),
       "Cache entries or queue bindings reached from a different compute context (SLO 0).",
       ("node_id", "world_id", "as_of", "partition")),
    _m("qmtl_dropped_label_values_total", "counter", ("metric",), _ALL,
       "Label values replaced by __other__ because a metric reached its series budget."),
    _m("controlbus_invalid_events_total", "counter", ("reason",), (_GW, _WS),
       "ControlBus events rejected or skipped as malformed (log line per event)."),
    _m("qmtl_dependency_up", "gauge", ("dependency", "kind"), (_DM, _GW, _WS),
       "1 when the last check of a backend this process relies on answered within its deadline, 0 when it failed or still waits."),
    _m("qmtl_dependency_probe_seconds", "gauge", ("dependency", "kind"), (_DM, _GW, _WS),
       "Duration of the last dependency check (the time waited so far while one hangs)."),
)  # fmt: skip

#: Series Prometheus and prometheus_client add by themselves, and Prometheus' own metrics
#: the self-alerts read (rule failures, notifications to Alertmanager).
PROMETHEUS_BUILTINS = frozenset({
    "up", "process_start_time_seconds", "prometheus_rule_evaluation_failures_total",
    "prometheus_notifications_errors_total", "prometheus_notifications_sent_total",
})  # fmt: skip

_BY_NAME = {s.name: s for s in CATALOGUE}


def spec(name: str) -> MetricSpec:
    """The catalogue entry of ``name``; a KeyError names the missing metric."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"{name} is not in the metric catalogue (qmtl/foundation/catalogue.py)"
        ) from None


def owned_by(owner: str) -> list[MetricSpec]:
    return [s for s in CATALOGUE if owner in s.owners or "any" in s.owners]


def metric_names() -> set[str]:
    """Every series name a query may use, including histogram suffixes."""
    names: set[str] = set()
    for entry in CATALOGUE:
        names.add(entry.name)
        if entry.kind == "histogram":
            names.update(f"{entry.name}_{s}" for s in ("bucket", "count", "sum"))
    return names
