"""Shared Prometheus helpers: the only place collectors are created.

Every QMTL metric lives on prometheus_client's global ``REGISTRY`` so that
``start_http_server``/``generate_latest`` see all of them.  Modules call
:func:`counter`, :func:`gauge` or :func:`histogram`, which return the already
registered collector when the module is imported twice (tests, reloads) instead of
failing with "Duplicated timeseries".

``_created`` series are disabled process-wide: they double the exposition size and no
alert or dashboard reads them.
"""

from __future__ import annotations

import errno
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import prometheus_client
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.registry import CollectorRegistry

__all__ = [
    "MS_BUCKETS",
    "UNSET",
    "BoundedSeries",
    "MetricsServer",
    "MetricsServerError",
    "QuantileWindow",
    "clear_series",
    "counter",
    "gauge",
    "histogram",
    "nonzero_series",
    "normalize_label",
    "p95_gauge",
    "remove_series",
    "sample_value",
    "start_metrics_server",
]

prometheus_client.disable_created_metrics()

#: Millisecond buckets that straddle every latency alert threshold (150, 200, 500 ms, 5 s).
MS_BUCKETS: tuple[float, ...] = (
    1, 2.5, 5, 10, 25, 50, 100, 150, 200, 250, 500, 1000, 2500, 5000, 10000,
)  # fmt: skip

#: Value used for empty, ``None`` or unknown context labels, so alerts can route on it.
UNSET = "__unset__"

_C = TypeVar("_C", Counter, Gauge, Histogram)
_lock = threading.Lock()


def normalize_label(value: object, allowed: Iterable[str] | None = None) -> str:
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


def _get_or_create(
    kind: type[_C],
    name: str,
    documentation: str,
    labelnames: Sequence[str],
    registry: CollectorRegistry,
    **kwargs: Any,
) -> _C:
    with _lock:
        existing = registry._names_to_collectors.get(name)
        if existing is not None:
            if not isinstance(existing, kind):
                raise ValueError(
                    f"metric {name} is already registered as {type(existing).__name__}, "
                    f"not {kind.__name__}"
                )
            if tuple(existing._labelnames) != tuple(labelnames):
                raise ValueError(
                    f"metric {name} is already registered with labels "
                    f"{existing._labelnames}, not {tuple(labelnames)}"
                )
            return existing
        return kind(name, documentation, labelnames=labelnames, registry=registry, **kwargs)


def counter(
    name: str, documentation: str, labelnames: Sequence[str] = (), *,
    registry: CollectorRegistry = REGISTRY,
) -> Counter:  # fmt: skip
    """Get or create a counter; ``name`` is the full exposed name (``..._total``)."""
    return _get_or_create(Counter, name, documentation, labelnames, registry)


def gauge(
    name: str, documentation: str, labelnames: Sequence[str] = (), *,
    registry: CollectorRegistry = REGISTRY,
) -> Gauge:  # fmt: skip
    """Get or create a gauge."""
    return _get_or_create(Gauge, name, documentation, labelnames, registry)


def histogram(
    name: str, documentation: str, labelnames: Sequence[str] = (), *,
    buckets: Sequence[float] = MS_BUCKETS, registry: CollectorRegistry = REGISTRY,
) -> Histogram:  # fmt: skip
    """Get or create a histogram; defaults to :data:`MS_BUCKETS` (milliseconds)."""
    return _get_or_create(Histogram, name, documentation, labelnames, registry, buckets=buckets)


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


def p95_gauge(name: str, documentation: str, window: QuantileWindow) -> Gauge:
    """A gauge whose value is ``window``'s p95, computed at scrape time."""
    metric = gauge(name, documentation)
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
        server, thread = prometheus_client.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MetricsServerError(
                f"cannot serve metrics on {host}:{port}: the port is already in use; "
                "stop the other process or choose another port (--metrics-port / port=)"
            ) from None
        raise MetricsServerError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    return MetricsServer(host=host, port=server.server_port, _server=server, _thread=thread)
