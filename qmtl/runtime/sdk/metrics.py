"""SDK metrics: node executions, cache reads, backfill, cross-context hits, recorder errors.

Usage::

    from qmtl.runtime.sdk import metrics
    metrics.start_metrics_server(port=8000)

Hot-path metrics (``node_*``, ``cache_read_total``, ``cache_last_read_timestamp``) are
kept as plain Python numbers in per-node/per-upstream slots and turned into samples by
a custom collector at scrape time: a locked prometheus_client ``inc`` costs ~450 ns and
``observe`` ~1 us, a plain integer increment ~30 ns, and the SDK executes hundreds of
thousands of nodes per second.  Rare events (backfill, cross-context hits, recorder
errors) use ordinary prometheus_client collectors.  Everything is on the global REGISTRY.
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from qmtl.foundation import crosscontext, exposition
from qmtl.foundation import metrics as m
from qmtl.foundation.catalogue import spec
from qmtl.foundation.crosscontext import cross_context_cache_hit_total

__all__ = [
    "CONTEXT_LABELS",
    "NodeStats",
    "ReadStats",
    "backfill_failure_total",
    "backfill_jobs_in_progress",
    "backfill_last_timestamp",
    "backfill_retry_total",
    "collect_metrics",
    "cross_context_cache_hit_total",
    "event_recorder_errors_total",
    "node_stats",
    "observe_backfill_complete",
    "observe_backfill_failure",
    "observe_backfill_retry",
    "observe_backfill_start",
    "observe_cache_read",
    "observe_cross_context_hit",
    "observe_node_process",
    "observe_node_process_failure",
    "observe_recorder_errors",
    "read_stats",
    "register_cache",
    "release_node",
    "release_reads",
    "reset_metrics",
    "set_series_grace",
    "start_metrics_server",
    "unregister_cache",
]

CONTEXT_LABELS = ("node_id", "world_id", "execution_domain", "as_of", "partition")
_BOUNDS = tuple(float(b) for b in m.MS_BUCKETS)
FIRST_BOUND = _BOUNDS[0]

# ----------------------------------------------------------------- hot-path slots


class NodeStats:
    """Per-node execution counters, updated without locks.

    ``processed`` is not stored: it is the sum of the bucket counts, computed at scrape
    time, which saves one increment per execution on the hot path.  ``users`` counts the
    executors holding the slot; when the last one closes, the node's series go.
    """

    __slots__ = (
        "buckets", "exemplars", "failures", "node_id", "released_at", "scraped", "sum_ms",
        "users",
    )  # fmt: skip

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.failures = 0
        self.sum_ms = 0.0
        self.buckets = [0] * (len(_BOUNDS) + 1)  # last slot: +Inf
        self.users = 0
        #: Set when the last executor let go (see :func:`release_node`); None while in use.
        self.released_at: float | None = None
        #: Whether a scrape saw the series since it was released.
        self.scraped = False
        #: Latest traced execution per bucket (only with per-node tracing).
        self.exemplars: dict[int, Exemplar] | None = None

    @property
    def processed(self) -> int:
        return sum(self.buckets)

    def observe_bucket(self, duration_ms: float) -> None:
        self.buckets[bisect.bisect_left(_BOUNDS, duration_ms)] += 1

    def observe(self, duration_ms: float) -> None:
        self.sum_ms += duration_ms
        if duration_ms <= FIRST_BOUND:
            self.buckets[0] += 1
        else:
            self.buckets[bisect.bisect_left(_BOUNDS, duration_ms)] += 1

    def observe_traced(self, duration_ms: float, trace: dict[str, str] | None) -> None:
        """Like :meth:`observe`; the span's trace id becomes the bucket's exemplar."""
        self.observe(duration_ms)
        if trace is not None:
            if self.exemplars is None:
                self.exemplars = {}
            index = bisect.bisect_left(_BOUNDS, duration_ms)
            self.exemplars[index] = Exemplar(trace, duration_ms, time.time())


class ReadStats:
    __slots__ = ("count", "interval", "last", "released_at", "scraped", "upstream_id", "users")

    def __init__(self, upstream_id: str, interval: str) -> None:
        self.upstream_id = upstream_id
        self.interval = interval
        self.count = 0
        self.last = 0.0
        self.users = 0
        self.released_at: float | None = None
        self.scraped = False

    def hit(self) -> None:
        self.count += 1
        self.last = time.time()


_nodes: dict[str, NodeStats] = {}
_reads: dict[tuple[str, str], ReadStats] = {}
_caches: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_slots_lock = threading.Lock()

#: A released series stays exported at least this long (two 15 s scrape intervals) and
#: until a scrape has seen it, so the last counts of a finished run reach Prometheus.
SERIES_GRACE_SECONDS = 30.0
#: ...but never longer than this when nothing scrapes the process (bounded memory).
SERIES_MAX_LINGER_SECONDS = 600.0


def set_series_grace(seconds: float) -> None:
    """How long released node and read series stay exported (default 30 s)."""
    global SERIES_GRACE_SECONDS
    SERIES_GRACE_SECONDS = max(0.0, float(seconds))


def node_stats(node_id: str, *, acquire: bool = False) -> NodeStats:
    """The stats slot of a node; resolve once, then update it directly on the hot path.

    ``acquire`` registers one more user (an executor); :func:`release_node` undoes it.
    """
    stats = _nodes.get(node_id)
    if stats is None or acquire:
        with _slots_lock:
            stats = _nodes.setdefault(node_id, NodeStats(node_id))
            if acquire:
                stats.users += 1
                stats.released_at = None  # in use again: its counts go on
    return stats


def _release(stats: NodeStats | ReadStats | None) -> None:
    """One user fewer (under ``_slots_lock``); the last one starts the grace period."""
    if stats is None:
        return
    stats.users -= 1
    if stats.users <= 0:
        stats.users = 0
        stats.released_at = time.monotonic()
        stats.scraped = False


def release_node(node_id: str) -> None:
    """An executor closed.  Once no executor uses the node its series are *released*:
    still exported until a scrape has seen them and :data:`SERIES_GRACE_SECONDS` have
    passed (a backtest's failures must reach Prometheus after it returns), then dropped
    (bounded series)."""
    with _slots_lock:
        _release(_nodes.get(node_id))


def release_reads(upstream_id: str, interval: int | str) -> None:
    """Like :func:`release_node`, for the cache-read series of one (upstream, interval)."""
    key = (upstream_id, str(interval))
    with _slots_lock:
        _release(_reads.get(key))


def read_stats(upstream_id: str, interval: int | str, *, acquire: bool = False) -> ReadStats:
    key = (upstream_id, str(interval))
    stats = _reads.get(key)
    if stats is None or acquire:
        with _slots_lock:
            stats = _reads.setdefault(key, ReadStats(*key))
            if acquire:
                stats.users += 1
                stats.released_at = None
    return stats


def _expired(stats: NodeStats | ReadStats, now: float) -> bool:
    released = stats.released_at
    if released is None:
        return False
    age = now - released
    return (stats.scraped and age >= SERIES_GRACE_SECONDS) or age >= SERIES_MAX_LINGER_SECONDS


def _drop_released() -> None:
    """Forget released series whose time is up (called at each collection)."""
    now = time.monotonic()
    with _slots_lock:
        for node_id in [k for k, v in _nodes.items() if _expired(v, now)]:
            del _nodes[node_id]
        for key in [k for k, v in _reads.items() if _expired(v, now)]:
            del _reads[key]


def register_cache(node_id: str, cache: Any) -> None:
    """Report ``cache.resident_bytes()`` as nodecache_resident_bytes while ``cache`` lives."""
    _caches[node_id] = cache


def unregister_cache(node_id: str) -> None:
    """Drop a removed node's series (bounded cardinality)."""
    _caches.pop(node_id, None)


#: The hot-path families are described by the catalogue like every other metric.
_HELP = {
    name: spec(name).help
    for name in (
        "node_processed_total", "node_process_failure_total", "node_process_duration_ms",
        "cache_read_total", "cache_last_read_timestamp", "nodecache_resident_bytes",
    )
}  # fmt: skip


class _HotPathCollector(Collector):
    def collect(self) -> Iterator[Any]:
        _drop_released()
        processed = CounterMetricFamily(
            "node_processed", _HELP["node_processed_total"], labels=["node_id"]
        )
        failures = CounterMetricFamily(
            "node_process_failure", _HELP["node_process_failure_total"], labels=["node_id"]
        )
        duration = HistogramMetricFamily(
            "node_process_duration_ms", _HELP["node_process_duration_ms"], labels=["node_id"]
        )
        for stats in list(_nodes.values()):
            if stats.released_at is not None:
                stats.scraped = True
            processed.add_metric([stats.node_id], stats.processed)
            failures.add_metric([stats.node_id], stats.failures)
            cumulative, buckets = 0, []
            exemplars = stats.exemplars or {}
            for index, (bound, count) in enumerate(
                zip((*_BOUNDS, float("inf")), stats.buckets, strict=True)
            ):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                ex = exemplars.get(index)
                buckets.append((le, cumulative, ex) if ex is not None else (le, cumulative))
            duration.add_metric([stats.node_id], buckets, stats.sum_ms)
        yield from (processed, failures, duration)

        reads = CounterMetricFamily(
            "cache_read", _HELP["cache_read_total"], labels=["upstream_id", "interval"]
        )
        last = GaugeMetricFamily(
            "cache_last_read_timestamp",
            _HELP["cache_last_read_timestamp"],
            labels=["upstream_id", "interval"],
        )
        for read in list(_reads.values()):
            if read.released_at is not None:
                read.scraped = True
            reads.add_metric([read.upstream_id, read.interval], read.count)
            last.add_metric([read.upstream_id, read.interval], read.last)
        yield from (reads, last)

        resident = GaugeMetricFamily(
            "nodecache_resident_bytes",
            _HELP["nodecache_resident_bytes"],
            labels=["node_id", "scope"],
        )
        total = 0
        caches = list(_caches.items())
        for node_id, cache in caches:
            size = int(cache.resident_bytes())
            total += size
            resident.add_metric([node_id, "node"], size)
        if caches:
            resident.add_metric(["all", "total"], total)
        yield resident

    def describe(self) -> Iterator[Any]:
        # Names only, so registration checks for clashes without running collect().
        yield CounterMetricFamily("node_processed", "", labels=["node_id"])
        yield CounterMetricFamily("node_process_failure", "", labels=["node_id"])
        yield HistogramMetricFamily("node_process_duration_ms", "", labels=["node_id"])
        yield CounterMetricFamily("cache_read", "", labels=["upstream_id", "interval"])
        yield GaugeMetricFamily("cache_last_read_timestamp", "", labels=["upstream_id", "interval"])
        yield GaugeMetricFamily("nodecache_resident_bytes", "", labels=["node_id", "scope"])


_collector = _HotPathCollector()
REGISTRY.register(_collector)  # once per process; a second registration raises

# ----------------------------------------------------------------- rare events

backfill_last_timestamp = m.create("backfill_last_timestamp")
backfill_jobs_in_progress = m.create("backfill_jobs_in_progress")
backfill_failure_total = m.create("backfill_failure_total")
backfill_retry_total = m.create("backfill_retry_total")
event_recorder_errors_total = m.create("event_recorder_errors_total")
RECORDERS = frozenset({"questdb", "sqlite", "memory"})

# ----------------------------------------------------------------- observe_* API


def observe_node_process(node_id: str, duration_ms: float) -> None:
    node_stats(node_id).observe(duration_ms)


def observe_node_process_failure(node_id: str) -> None:
    node_stats(node_id).failures += 1


def observe_cache_read(upstream_id: str, interval: int | str) -> None:
    read_stats(upstream_id, interval).hit()


def observe_cross_context_hit(
    node_id: object, world_id: object, execution_domain: object, as_of: object, partition: object
) -> None:
    crosscontext.observe_hit(node_id, world_id, execution_domain, as_of, partition)


def observe_backfill_start(node_id: str, interval: int | str) -> None:
    backfill_jobs_in_progress.inc()


def observe_backfill_complete(node_id: str, interval: int | str, timestamp: float) -> None:
    backfill_jobs_in_progress.dec()
    backfill_last_timestamp.labels(node_id, str(interval)).set(timestamp)


def observe_backfill_retry(node_id: str, interval: int | str) -> None:
    backfill_retry_total.labels(node_id, str(interval)).inc()


def observe_backfill_failure(node_id: str, interval: int | str) -> None:
    backfill_jobs_in_progress.dec()
    backfill_failure_total.labels(node_id, str(interval)).inc()


def observe_recorder_errors(recorder: str, rows: int) -> None:
    if rows > 0:
        event_recorder_errors_total.labels(m.normalize_label(recorder, RECORDERS)).inc(rows)


# ----------------------------------------------------------------- module API


def start_metrics_server(port: int = 8000, host: str | None = None) -> m.MetricsServer:
    """Serve ``/metrics`` (global registry) from a daemon thread; ``.stop()`` ends it.

    ``host`` defaults to ``sdk.host`` of qmtl.yml (``QMTL_SDK__HOST``; loopback unless
    set): use ``0.0.0.0`` where a Prometheus in another pod or host scrapes the process.
    Raises :class:`qmtl.foundation.metrics.MetricsServerError` if the port is taken.
    """
    if host is None:
        from qmtl.runtime.sdk.telemetry import sdk_config

        host = sdk_config().sdk.host
    return m.start_metrics_server(port, host)


def collect_metrics() -> str:
    """The Prometheus text exposition of this process, as ``/metrics`` would serve it."""
    return exposition.text_latest(REGISTRY).decode()


def reset_metrics() -> None:
    """Zero every SDK metric (tests, or the cache-reset tooling of the runbook)."""
    with _slots_lock:
        _nodes.clear()
        _reads.clear()
    for metric in (backfill_last_timestamp, backfill_failure_total, backfill_retry_total):
        metric.clear()
    crosscontext.reset()
    event_recorder_errors_total.clear()
    backfill_jobs_in_progress.set(0)
