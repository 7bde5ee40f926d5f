"""The one ``/metrics`` renderer of QMTL: prometheus_client's formats at a fraction of the cost.

Prometheus asks for OpenMetrics first, and prometheus_client 0.26 escapes every sample's
name character by character in that format (~28 µs per series, most of a 10,000-series
scrape).  Names repeat -- a family has a handful -- so this module escapes each distinct
name once (memoised with the library's own escaping functions) and label values only when
they hold a character that needs it.

The library's ``collect()`` was then most of what was left (~6 µs per series: a merged
label dict and two ``Sample`` tuples each).  For the library's own metric classes with
labels, this module walks the children itself, reading the same private attributes
``collect()`` reads (``_metrics``, ``_lock``, ``_labelnames``, ``_name``, a child's
``_value`` or ``_child_samples()``), and of the in-process value holder its ``_value``
and ``_exemplar`` directly (two lock round trips per series less); prometheus-client is
pinned to one version in pyproject.toml for that reason.  Custom collectors, subclasses
that override collection and restricted registries go through ``collect()``.  The float
formatting (but for a finite float under 1e6, written as its ``repr``, which is what
``floatToGoString`` returns there), the exemplar rendering and the content negotiation
are always the library's.

The fast path covers what Prometheus and every QMTL scraper negotiate: OpenMetrics 1.0.0
and text 0.0.4 with the default ``underscores`` name escaping.  Any other negotiation
(OpenMetrics 2.0, ``escaping=allow-utf-8``, ...) is served by the library's encoder
unchanged.  ``tests/foundation/test_exposition.py`` checks that the output is byte for
byte the library's for every metric type, exemplars, timestamps, special values and
escapes.  The fast path runs only on the prometheus_client versions that check passed
on (:data:`VERIFIED_LIBRARY_VERSIONS`); with any other version installed every scrape
is the library's own encoder, slower but never wrong.
"""

from __future__ import annotations

import copy
import gzip
import importlib.metadata
import logging
import math
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client import metrics as library_metrics
from prometheus_client.exposition import (
    CONTENT_TYPE_PLAIN_0_0_4,
    ThreadingWSGIServer,
    choose_encoder,
    gzip_accepted,
)
from prometheus_client.exposition import generate_latest as library_text
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString
from prometheus_client.values import MutexValue

__all__ = [
    "FAST_PATH",
    "VERIFIED_LIBRARY_VERSIONS",
    "encoder_for",
    "fast_path_supported",
    "openmetrics_latest",
    "render",
    "serve_wsgi",
    "text_latest",
]

Encoder = Callable[[Collector], bytes]
#: One sample to write: full name, label text (no braces), value, timestamp, exemplar and
#: native histogram, as a ``Sample`` holds them.
Row = tuple[str, str, float, Any, Exemplar | None, Any]
#: Library metric types whose child holds one value, and the suffix of its sample.
_SINGLE_VALUE_SUFFIX = {Counter: "_total", Gauge: ""}
#: gzip level for scrapes that accept it: level 1 is ~8x faster than the library's 9 and
#: still shrinks the exposition ~10x.
GZIP_LEVEL = 1
#: prometheus_client versions whose private attributes and output this module was
#: checked against, byte for byte (add a version after running the exposition tests).
VERIFIED_LIBRARY_VERSIONS = frozenset({"0.26.0"})

log = logging.getLogger(__name__)


def fast_path_supported(version: str) -> bool:
    """Whether the renderer of this module may stand in for the library's at ``version``."""
    return version in VERIFIED_LIBRARY_VERSIONS


LIBRARY_VERSION = importlib.metadata.version("prometheus_client")
#: False: every scrape is served by prometheus_client's own encoders.
FAST_PATH = fast_path_supported(LIBRARY_VERSION)
if not FAST_PATH:
    log.warning(
        "prometheus_client %s is not one the fast /metrics renderer was verified with (%s); "
        "serving the library's own encoder", LIBRARY_VERSION, ", ".join(sorted(VERIFIED_LIBRARY_VERSIONS)),
    )  # fmt: skip


@lru_cache(maxsize=16384)
def _family_name(name: str) -> str:
    return om.escape_metric_name(name, om.UNDERSCORES)


@lru_cache(maxsize=65536)
def _om_sample_name(name: str) -> str:
    # The library escapes OpenMetrics sample names with the *label* name rules.
    return om._escape(name, om.UNDERSCORES, om._is_legacy_labelname_rune)


@lru_cache(maxsize=4096)
def _label_name(name: str) -> str:
    return om.escape_label_name(name, om.UNDERSCORES)


def _escape_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _labels(labels: dict[str, str]) -> str:
    return ",".join([f'{_label_name(k)}="{_escape_value(v)}"' for k, v in sorted(labels.items())])


def _collectors(registry: Collector) -> tuple[Metric | None, Iterable[Collector]]:
    """The registry's target-info family and collectors, as ``CollectorRegistry.collect`` reads them."""
    if type(registry) is not CollectorRegistry:
        return None, [registry]  # restricted or custom registries: their own collect()
    with registry._lock:
        collectors = copy.copy(registry._collector_to_names)
        target_info = registry._target_info_metric() if registry._target_info else None
    return target_info, collectors


def _is_plain_parent(collector: Collector) -> bool:
    """A library metric with labels whose collection the library does not let subclasses change."""
    kind = type(collector)
    return (
        isinstance(collector, MetricWrapperBase)
        and kind.collect is MetricWrapperBase.collect
        and kind._samples is MetricWrapperBase._samples  # type: ignore[attr-defined]
        and kind._multi_samples is MetricWrapperBase._multi_samples  # type: ignore[attr-defined]
        and collector._is_parent()
    )


def _label_texts(parent: MetricWrapperBase) -> list[tuple[Sequence[str], Any, str]]:
    """Each child with its label values and its label text (no braces), labels in name order.

    This replaces ``_multi_samples``, which merges every child's labels into a new dict
    for ``collect`` to copy into the family once more (~6 µs per series between them).
    A list, built by comprehensions: a generator's resumption per child cost more.
    """
    with parent._lock:
        children = parent._metrics.copy()
    names = parent._labelnames
    framed = [(_label_name(names[i]) + '="', i) for i in sorted(range(len(names)), key=names.__getitem__)]  # fmt: skip
    if len(framed) == 1:
        key, _ = framed[0]
        return [
            (values, child, f'{key}{_escape_value(values[0])}"')
            for values, child in children.items()
        ]
    return [
        (values, child, ",".join([f'{key}{_escape_value(values[i])}"' for key, i in framed]))
        for values, child in children.items()
    ]


def _parent_rows(parent: MetricWrapperBase) -> Iterator[Row]:
    """The rows of every child; only samples with labels of their own (buckets, states) merge."""
    names, base = parent._labelnames, parent._name
    for values, child, text in _label_texts(parent):
        for sample in child._child_samples():
            labels = text
            if sample.labels:
                merged = dict(zip(names, values, strict=True))
                merged.update(sample.labels)
                labels = _labels(merged)
            yield (base + sample.name, labels, sample.value, sample.timestamp, sample.exemplar,
                   sample.native_histogram)  # fmt: skip


def _single_value_lines(
    parent: MetricWrapperBase, sample_name: Callable[[str], str], exemplars: Metric | None
) -> list[str] | None:
    """The lines of a labelled counter or gauge -- nearly every series QMTL has -- or None.

    Each child's value is read straight from it: no sample tuple, no row.  None when the
    family holds more than one value per child (a counter with ``_created``) or a child
    computes its own samples (``Gauge.set_function``); the rows serve those.  Exemplars
    are written only when ``exemplars`` (the family) is given: OpenMetrics has them, the
    text format does not.
    """
    suffix = _SINGLE_VALUE_SUFFIX.get(type(parent))
    if suffix is None or (suffix and library_metrics._use_created):
        return None
    name = parent._name + suffix
    prefix = sample_name(name) + "{"
    with_exemplars = bool(suffix) and exemplars is not None
    lines: list[str] = []
    append = lines.append
    for _, child, text in _label_texts(parent):
        if "_child_samples" in child.__dict__:
            return None  # set_function() gave this child samples of its own
        holder = child._value
        if holder.__class__ is MutexValue:
            # One attribute read is atomic; the holder's lock serialises read-modify-write
            # (inc), and the library itself reads value and exemplar under separate locks.
            value, exemplar = holder._value, holder._exemplar if with_exemplars else None
        else:  # multiprocess mode: the value lives in a file
            value = holder.get()
            exemplar = holder.get_exemplar() if with_exemplars else None
        tail = _exemplar_text(exemplars, name, value, exemplar) if exemplar else ""  # type: ignore[arg-type]
        append(f"{prefix}{text}}} {_go_float(value)}{tail}\n")
    return lines


def _go_float(value: float) -> str:
    """``floatToGoString``: a finite float under 1e6 is its ``repr`` there, so only the
    rest (exponents, infinities, NaN, ints) takes the library's function."""
    if value.__class__ is float and -math.inf < value < 1e6:
        return repr(value)
    return floatToGoString(value)  # type: ignore[no-any-return]


class _Family(NamedTuple):
    metric: Metric
    rows: Iterable[Row]
    #: The library metric behind ``metric`` when it is a labelled parent, for
    #: :func:`_single_value_lines`.
    parent: MetricWrapperBase | None = None


def _families(registry: Collector) -> Iterator[_Family]:
    """Each family and its samples, in registry order; ``rows`` are produced lazily."""
    target_info, collectors = _collectors(registry)
    if target_info is not None:
        yield _Family(target_info, _metric_rows(target_info))
    for collector in collectors:
        if _is_plain_parent(collector):
            parent: MetricWrapperBase = collector  # type: ignore[assignment]
            yield _Family(parent._get_metric(), _parent_rows(parent), parent)
        else:
            for metric in collector.collect():
                yield _Family(metric, _metric_rows(metric))


def _metric_rows(metric: Metric) -> Iterator[Row]:
    for s in metric.samples:
        yield s.name, _labels(s.labels), s.value, s.timestamp, s.exemplar, s.native_histogram


def _exemplar_text(metric: Metric, sample_name: str, value: float, exemplar: Exemplar) -> str:
    sample = Sample(sample_name, {}, value, None, exemplar)
    return om._compose_exemplar_string(metric, sample, exemplar)  # type: ignore[no-any-return]


def openmetrics_latest(registry: Collector = REGISTRY) -> bytes:
    """OpenMetrics 1.0.0 (underscores escaping), as ``openmetrics.generate_latest``."""
    output: list[str] = []
    append = output.append
    for metric, rows, parent in _families(registry):
        name = _family_name(metric.name)
        append(
            f"# HELP {name} {_escape_value(metric.documentation)}\n# TYPE {name} {metric.type}\n"
        )
        if metric.unit:
            append(f"# UNIT {name} {metric.unit}\n")
        lines = _single_value_lines(parent, _om_sample_name, metric) if parent else None
        if lines is not None:
            output.extend(lines)
            continue
        for sample_name, labels, value, timestamp, exemplar, native_histogram in rows:
            if native_histogram:
                continue  # native histograms exist only from OpenMetrics 2.0
            braced = f"{{{labels}}}" if labels else ""
            number = floatToGoString(value) if value is not None else ""
            stamp = f" {timestamp}" if timestamp is not None else ""
            tail = _exemplar_text(metric, sample_name, value, exemplar) if exemplar else ""
            append(f"{_om_sample_name(sample_name)}{braced} {number}{stamp}{tail}\n")
    append("# EOF\n")
    return "".join(output).encode("utf-8")


#: OpenMetrics types and the text-format type and family-name suffix they become.
_TEXT_TYPES = {
    "counter": ("counter", "_total"),
    "info": ("gauge", "_info"),
    "stateset": ("gauge", ""),
    "gaugehistogram": ("histogram", ""),
    "unknown": ("untyped", ""),
}
_OM_ONLY_SUFFIXES = ("_created", "_gsum", "_gcount")


def _text_help(documentation: str) -> str:
    return documentation.replace("\\", r"\\").replace("\n", r"\n")


def text_latest(registry: Collector = REGISTRY) -> bytes:
    """Text format 0.0.4 (underscores escaping), as ``exposition.generate_latest``."""
    output: list[str] = []
    append = output.append
    for metric, rows, parent in _families(registry):
        mtype, suffix = _TEXT_TYPES.get(metric.type, (metric.type, ""))
        name = _family_name(metric.name + suffix)
        append(f"# HELP {name} {_text_help(metric.documentation)}\n# TYPE {name} {mtype}\n")
        lines = _single_value_lines(parent, _family_name, None) if parent else None
        if lines is not None:
            output.extend(lines)  # a counter's or gauge's samples are never OpenMetrics-only
            continue
        om_only: dict[str, list[str]] = {}
        om_names = {metric.name + x: x for x in _OM_ONLY_SUFFIXES}
        for sample_name, labels, value, timestamp, _, _ in rows:
            braced = f"{{{labels}}}" if labels else ""
            stamp = f" {int(float(timestamp) * 1000):d}" if timestamp is not None else ""
            line = f"{_family_name(sample_name)}{braced} {floatToGoString(value)}{stamp}\n"
            om_suffix = om_names.get(sample_name)
            if om_suffix is None:
                append(line)
            else:
                om_only.setdefault(om_suffix, []).append(line)
        for om_suffix, lines in sorted(om_only.items()):
            gauge = _family_name(metric.name + om_suffix)
            append(f"# HELP {gauge} {_text_help(metric.documentation)}\n# TYPE {gauge} gauge\n")
            output.extend(lines)
    return "".join(output).encode("utf-8")


def encoder_for(accept: str | None) -> tuple[Encoder, str]:
    """The encoder and content type for a scraper's ``Accept`` header.

    Negotiation is prometheus_client's; where it picks OpenMetrics 1.0.0 or text 0.0.4
    with underscores escaping, the fast renderer of this module stands in for it.
    """
    library, content_type = choose_encoder(accept or "")
    keywords = getattr(library, "keywords", {})
    if not FAST_PATH or keywords.get("escaping", om.UNDERSCORES) != om.UNDERSCORES:
        return library, content_type
    if getattr(library, "func", None) is om.generate_latest and keywords.get("version") == "1.0.0":
        return openmetrics_latest, content_type
    if library is library_text and content_type == CONTENT_TYPE_PLAIN_0_0_4:
        return text_latest, content_type
    return library, content_type


def render(accept: str | None, registry: Collector = REGISTRY) -> tuple[bytes, str]:
    """The registry in the format ``accept`` asks for, and its content type."""
    encoder, content_type = encoder_for(accept)
    return encoder(registry), content_type


def compress(body: bytes, accept_encoding: str | None) -> tuple[bytes, list[tuple[str, str]]]:
    """gzip ``body`` (at :data:`GZIP_LEVEL`) when the scraper accepts it."""
    if accept_encoding and gzip_accepted(accept_encoding):
        return gzip.compress(body, GZIP_LEVEL), [("Content-Encoding", "gzip")]
    return body, []


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def _metrics_app(registry: Collector) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "GET":
            start_response("405 Method Not Allowed", [("Allow", "GET")])
            return [b""]
        params = parse_qs(environ.get("QUERY_STRING", ""))
        target = registry.restricted_registry(params["name[]"]) if "name[]" in params else registry  # type: ignore[attr-defined]
        body, content_type = render(environ.get("HTTP_ACCEPT"), target)
        body, extra = compress(body, environ.get("HTTP_ACCEPT_ENCODING"))
        start_response("200 OK", [("Content-Type", content_type), *extra])
        return [body]

    return app


def serve_wsgi(host: str, port: int, registry: Collector) -> tuple[Any, threading.Thread]:
    """Serve ``registry`` over HTTP from a daemon thread (one thread per scrape)."""

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host, port, _metrics_app(registry), Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="qmtl-metrics", daemon=True)
    thread.start()
    return server, thread
