"""Shared Prometheus helpers: the only place collectors are created.

Every QMTL metric is described once, in :mod:`qmtl.foundation.catalogue`, and built
once, by :func:`create`, on prometheus_client's global ``REGISTRY`` (so
``start_http_server``/``generate_latest`` see all of them).  Creating the same name twice
raises, as prometheus_client does: a metric cannot be defined in two places unnoticed.

Label values that come from clients are bounded by :class:`LabelBudget`: past a cap per
metric, new values become ``__other__`` and ``qmtl_dropped_label_values_total`` counts
them, so no client can grow a process's series without bound.

``_created`` series are disabled process-wide: they double the exposition size and no
alert or dashboard reads them.
"""

from __future__ import annotations

import errno
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import prometheus_client
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.registry import CollectorRegistry

from qmtl.foundation.catalogue import MS_BUCKETS, MetricSpec, spec
from qmtl.foundation.exposition import serve_wsgi

__all__ = [
    "MS_BUCKETS",
    "OTHER",
    "UNSET",
    "BoundedSeries",
    "LabelBudget",
    "MetricsServer",
    "MetricsServerError",
    "QuantileWindow",
    "ValueBudget",
    "bind_p95",
    "clear_series",
    "create",
    "dropped_label_values_total",
    "nonzero_series",
    "normalize_label",
    "remove_series",
    "sample_value",
    "set_series_budget",
    "start_metrics_server",
]

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

#: Value used for empty, ``None`` or unknown context labels, so alerts can route on it.
UNSET = "__unset__"
#: Value of client-controlled labels once a metric's series budget is spent.
OTHER = "__other__"

_KINDS: dict[str, type[Counter] | type[Gauge] | type[Histogram]] = {
    "counter": Counter,
    "gauge": Gauge,
    "histogram": Histogram,
}


def normalize_label(value: object, allowed: Sequence[str] | frozenset[str] | None = None) -> str:
    """Map ``None``/empty/unknown label values to :data:`UNSET`.

    ``allowed`` bounds cardinality for labels with a known vocabulary: anything
    outside it also becomes ``__unset__`` rather than a new series.
    """
    if value is None:
        return UNSET
    text = str(value).strip()
    if not text or text.lower() in {"none", "null", "unknown"}:
        return UNSET
    if allowed is not None and text not in allowed:
        return UNSET
    return text


def create(entry: MetricSpec | str, *, registry: CollectorRegistry = REGISTRY) -> Any:
    """Build the collector of a catalogue entry (or name) on ``registry``.

    Raises ``ValueError`` when the name is already registered there: each metric has
    exactly one defining module.  Tests that need isolation pass a fresh registry.
    """
    entry = spec(entry) if isinstance(entry, str) else entry
    kind = _KINDS[entry.kind]
    if kind is Histogram:
        return Histogram(
            entry.name, entry.help, labelnames=entry.labels, registry=registry,
            buckets=entry.buckets,
        )  # fmt: skip
    return kind(entry.name, entry.help, labelnames=entry.labels, registry=registry)


dropped_label_values_total = create("qmtl_dropped_label_values_total")
_budget_lock = threading.Lock()
_series_budget = 1000


def set_series_budget(cap: int) -> None:
    """Distinct label sets allowed per budgeted metric in this process (config)."""
    global _series_budget
    if cap < 1:
        raise ValueError("the series budget must be at least 1")
    _series_budget = cap


class LabelBudget:
    """Bounded label sets for a metric whose label values come from clients.

    The first ``cap`` distinct label sets pass unchanged; after that, the spec's free
    labels of a new set become ``__other__`` (one overflow series) and
    ``qmtl_dropped_label_values_total{metric}`` counts the replacement.  ``cap``
    defaults to the process budget (:func:`set_series_budget`).
    """

    def __init__(self, metric: Any, entry: MetricSpec | str, cap: int | None = None) -> None:
        self.metric = metric
        self.spec = spec(entry) if isinstance(entry, str) else entry
        self.cap = cap
        self._free = tuple(name in self.spec.free_labels for name in self.spec.labels)
        self._seen: set[tuple[str, ...]] = set()

    def values(self, *values: str) -> tuple[str, ...]:
        """The label values to use for ``values`` (themselves, or with ``__other__``)."""
        key = tuple(values)
        if key in self._seen:
            return key
        with _budget_lock:
            if key in self._seen:
                return key
            if len(self._seen) < (self.cap or _series_budget):
                self._seen.add(key)
                return key
        dropped_label_values_total.labels(self.spec.name).inc()
        return tuple(OTHER if free else v for free, v in zip(self._free, key, strict=True))

    def labels(self, *values: str) -> Any:
        return self.metric.labels(*self.values(*values))

    def forget(self, predicate: Callable[[tuple[str, ...]], bool]) -> int:
        """Drop the series whose label values match ``predicate`` (e.g. a deleted world)."""
        with _budget_lock:
            gone = [key for key in self._seen if predicate(key)]
            self._seen.difference_update(gone)
        for key in gone:
            remove_series(self.metric, *key)
        return len(gone)

    def clear(self) -> int:
        with _budget_lock:
            self._seen.clear()
        return clear_series(self.metric)


class ValueBudget:
    """Bounded values of one client-controlled label (e.g. ``world_id``) across metrics.

    The first ``cap`` distinct values pass; later ones become ``__other__`` and are
    counted in ``qmtl_dropped_label_values_total{metric=<name>}``.  :meth:`forget`
    frees a slot (a deleted world).
    """

    def __init__(self, name: str, cap: int | None = None) -> None:
        self.name = name
        self.cap = cap
        self._seen: set[str] = set()

    def value(self, value: str) -> str:
        if value in self._seen:
            return value
        with _budget_lock:
            if value in self._seen:
                return value
            if len(self._seen) < (self.cap or _series_budget):
                self._seen.add(value)
                return value
        dropped_label_values_total.labels(self.name).inc()
        return OTHER

    def forget(self, value: str) -> None:
        with _budget_lock:
            self._seen.discard(value)


def remove_series(metric: Counter | Gauge | Histogram, *labelvalues: str) -> bool:
    """Drop one labelled series if present; return whether it existed."""
    key = tuple(str(v) for v in labelvalues)
    with metric._lock:
        present = key in metric._metrics
    if present:
        metric.remove(*key)
    return present


def nonzero_series(metric: Counter | Gauge) -> list[dict[str, Any]]:
    """Label sets and values of the series of ``metric`` that are above zero."""
    return [
        {"labels": dict(s.labels), "value": s.value}
        for family in metric.collect()
        for s in family.samples
        if not s.name.endswith(("_created", "_bucket", "_count", "_sum")) and s.value > 0
    ]


def clear_series(metric: Counter | Gauge | Histogram) -> int:
    """Drop every labelled series of ``metric`` (an operator reset); returns how many there were."""
    with metric._lock:
        count = len(metric._metrics)
    metric.clear()
    return count


def sample_value(
    name: str, labels: dict[str, str] | None = None, *, registry: CollectorRegistry = REGISTRY
) -> float | None:
    """Read one sample (``None`` when absent); the testing-friendly read path."""
    return registry.get_sample_value(name, labels or {})


class QuantileWindow:
    """Exact quantiles over the samples of the last ``window_seconds``.

    Backs the ``*_p95`` gauges: an alert on ``diff_duration_ms_p95 > 200`` must stop
    firing once slow diffs are five minutes old, which a lifetime histogram cannot do.
    Memory is bounded by ``max_samples``; beyond it the oldest samples go first.

    >>> w = QuantileWindow(window_seconds=300)
    >>> for v in range(1, 101):
    ...     w.observe(v)
    >>> w.quantile(0.95)
    95.0
    """

    def __init__(
        self,
        window_seconds: float = 300.0,
        *,
        max_samples: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if max_samples <= 0:
            raise ValueError("max_samples must be positive")
        self.window_seconds = window_seconds
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._samples.append((self._clock(), float(value)))

    def _expire(self) -> None:
        horizon = self._clock() - self.window_seconds
        samples = self._samples
        while samples and samples[0][0] < horizon:
            samples.popleft()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._samples)

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of live samples, NaN when there are none."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be within [0, 1]")
        with self._lock:
            self._expire()
            values = sorted(v for _, v in self._samples)
        if not values:
            return math.nan
        rank = max(1, math.ceil(q * len(values)))
        return values[rank - 1]


def bind_p95(metric: Gauge, window: QuantileWindow) -> Gauge:
    """Make ``metric`` report ``window``'s p95, computed at scrape time."""
    metric.set_function(lambda: window.quantile(0.95))
    return metric


class BoundedSeries:
    """Keep at most ``keep`` label sets per group; older ones are removed from metrics.

    Used where a label is unbounded by nature (``run_id``): the newest runs of each
    world stay visible, the rest are dropped so cardinality cannot grow forever.
    """

    def __init__(self, keep: int) -> None:
        if keep <= 0:
            raise ValueError("keep must be positive")
        self.keep = keep
        self._groups: dict[Hashable, OrderedDict[Hashable, list[tuple[Any, tuple[str, ...]]]]] = {}
        self._lock = threading.Lock()

    def track(
        self, group: Hashable, member: Hashable, metric: Counter | Gauge | Histogram,
        labelvalues: Sequence[str],
    ) -> None:  # fmt: skip
        """Record that ``metric{labelvalues}`` belongs to ``member`` of ``group``."""
        evicted: list[tuple[Any, tuple[str, ...]]] = []
        with self._lock:
            members = self._groups.setdefault(group, OrderedDict())
            series = members.setdefault(member, [])
            members.move_to_end(member)
            key = (metric, tuple(labelvalues))
            if key not in series:
                series.append(key)
            while len(members) > self.keep:
                _, old = members.popitem(last=False)
                evicted.extend(old)
        for old_metric, values in evicted:
            remove_series(old_metric, *values)

    def members(self, group: Hashable) -> list[Hashable]:
        with self._lock:
            return list(self._groups.get(group, ()))


class MetricsServerError(RuntimeError):
    """The metrics endpoint could not be started (e.g. the port is taken)."""


@dataclass
class MetricsServer:
    """Handle for a running ``/metrics`` endpoint; call :meth:`stop` when done."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    port: int = 8000, host: str = "127.0.0.1", *, registry: CollectorRegistry = REGISTRY
) -> MetricsServer:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread.

    ``port=0`` picks a free port (read it back from ``.port``).
    """
    try:
        server, thread = serve_wsgi(host, port, registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MetricsServerError(
                f"cannot serve metrics on {host}:{port}: the port is already in use; "
                "stop the other process or choose another port (--metrics-port / port=)"
            ) from None
        raise MetricsServerError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    return MetricsServer(host=host, port=server.server_port, _server=server, _thread=thread)
