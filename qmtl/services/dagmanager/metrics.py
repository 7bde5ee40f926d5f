"""DAG Manager metrics, one module attribute per metric, named exactly like the metric.

Importing this module registers the DAG Manager's series on the global registry, so
only the DAG Manager process (or ``qmtl service dagmanager metrics``) imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from qmtl.foundation import metrics as m

__all__ = [
    "cross_context_cache_hit_total",
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
    "start_metrics_server",
]

CONTEXT_LABELS = ("node_id", "world_id", "execution_domain", "as_of", "partition")

diff_duration_ms = m.histogram(
    "diff_duration_ms", "Wall time of each DAG diff, success or failure (ms)."
)
diff_duration_window = m.QuantileWindow(300)
diff_duration_ms_p95 = m.p95_gauge(
    "diff_duration_ms_p95", "p95 of diffs finished in the last 5 minutes (ms); NaN when none.",
    diff_duration_window,
)  # fmt: skip
diff_requests_total = m.counter(
    "diff_requests_total", "Diff requests processed, success and failure."
)
diff_failures_total = m.counter("diff_failures_total", "Diff requests that failed.")
queue_create_error_total = m.counter("queue_create_error_total", "Queue (topic) creation failures.")
sentinel_gap_count = m.gauge(
    "sentinel_gap_count", "Strategy versions whose diff finished without their sentinel recorded."
)
orphan_queue_total = m.gauge("orphan_queue_total", "Queues no node emits, at the last GC run.")
gc_last_run_timestamp = m.gauge("gc_last_run_timestamp", "Unix time of the last completed GC run.")
queue_lag_seconds = m.gauge(
    "queue_lag_seconds",
    "Age in seconds of the oldest unconsumed message (0 when caught up).",
    ["topic"],
)
queue_lag_messages = m.gauge(
    "queue_lag_messages", "Offset lag: high watermark - committed.", ["topic"]
)
queue_lag_threshold_seconds = m.gauge(
    "queue_lag_threshold_seconds", "Configured lag alert boundary per topic (s).", ["topic"]
)
kafka_breaker_open_total = m.counter(
    "kafka_breaker_open_total", "Times the kafka circuit breaker opened."
)
kafka_breaker_state = m.gauge(
    "kafka_breaker_state", "State of the kafka circuit breaker (1 open, 0 closed)."
)
graphstore_breaker_open_total = m.counter(
    "graphstore_breaker_open_total", "Times the graphstore circuit breaker opened."
)
graphstore_breaker_state = m.gauge(
    "graphstore_breaker_state", "State of the graphstore circuit breaker (1 open, 0 closed)."
)
cross_context_cache_hit_total = m.counter(
    "cross_context_cache_hit_total",
    "Cache entries or queue bindings reached from a different compute context (SLO 0).",
    CONTEXT_LABELS,
)


def observe_diff(duration_ms: float, *, failed: bool) -> None:
    diff_requests_total.inc()
    if failed:
        diff_failures_total.inc()
    diff_duration_ms.observe(duration_ms)
    diff_duration_window.observe(duration_ms)


def start_metrics_server(port: int = 8000, host: str = "127.0.0.1") -> m.MetricsServer:
    """Serve this process's registry (with the DAG Manager metrics) on ``port``."""
    return m.start_metrics_server(port, host)


def cli_main(args: argparse.Namespace) -> int:
    """``qmtl service dagmanager metrics [--port N]``: a standalone exporter."""
    import signal
    import threading

    try:
        server = start_metrics_server(args.port, args.host)
    except m.MetricsServerError as exc:
        print(f"qmtl: {exc}", file=sys.stderr)
        return 1
    print(f"DAG Manager metrics on {server.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    return 0
