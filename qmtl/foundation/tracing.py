"""OpenTelemetry set-up shared by SDK, Gateway and DAG Manager.

One call per process, driven by ``telemetry.otel_exporter_endpoint`` in ``qmtl.yml``:

* an ``http(s)://`` URL -> OTLP/HTTP protobuf exporter with batching;
* ``console``          -> spans printed to stdout as they end (local development);
* unset                -> no provider; spans are non-recording and cost almost nothing.

Trace context crosses process boundaries as W3C ``traceparent`` headers (HTTP) or
gRPC metadata, through the helpers below, so one trace covers SDK -> Gateway -> DAG
Manager.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from qmtl.foundation.config import QmtlConfig, TelemetryConfig

__all__ = [
    "context_from_grpc_metadata",
    "exemplar",
    "extract_http_context",
    "get_tracer",
    "grpc_metadata",
    "inject_http_headers",
    "setup_tracing",
    "shutdown_tracing",
]

log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def _telemetry(config: QmtlConfig | TelemetryConfig | str | None) -> TelemetryConfig:
    if config is None:
        return TelemetryConfig()
    if isinstance(config, QmtlConfig):
        return config.telemetry
    if isinstance(config, str):
        return TelemetryConfig(otel_exporter_endpoint=config)
    return config


def setup_tracing(
    service_name: str,
    config: QmtlConfig | TelemetryConfig | str | None = None,
    *,
    exporter: SpanExporter | None = None,
) -> TracerProvider | None:
    """Install the process-wide tracer provider for ``service_name``.

    ``exporter`` overrides the configured endpoint (tests pass an in-memory one).
    Returns the provider, or ``None`` when tracing is disabled.  Calling it again in
    the same process returns the first provider: OpenTelemetry allows only one.
    """
    global _provider
    if _provider is not None:
        return _provider
    telemetry = _telemetry(config)
    endpoint = telemetry.otel_exporter_endpoint
    if exporter is None and endpoint is None:
        return None
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}),
        sampler=ParentBased(TraceIdRatioBased(telemetry.sample_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif endpoint == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    else:
        # Imported lazily: the OTLP exporter pulls in protobuf/requests.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=500)
        )
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("tracing enabled for %s -> %s", service_name, endpoint or type(exporter).__name__)
    return provider


def shutdown_tracing() -> None:
    """Flush pending spans; safe to call when tracing is off."""
    if _provider is not None:
        _provider.force_flush()
        _provider.shutdown()


def get_tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def exemplar(span: trace.Span | None = None) -> dict[str, str] | None:
    """``{"trace_id": ...}`` of ``span`` (default: the current one) for an OpenMetrics exemplar.

    Only a span this process records and samples: with tracing off there is no trace to
    open, so observations carry no exemplar (and cost nothing more).
    """
    span = span if span is not None else trace.get_current_span()
    if not span.is_recording():
        return None
    ctx = span.get_span_context()
    if not ctx.trace_flags.sampled:
        return None
    return {"trace_id": format(ctx.trace_id, "032x")}


def inject_http_headers(
    headers: MutableMapping[str, str] | None = None,
) -> MutableMapping[str, str]:
    """Add ``traceparent`` (and ``tracestate``) of the current span to ``headers``."""
    carrier: MutableMapping[str, str] = {} if headers is None else headers
    _propagator.inject(carrier)
    return carrier


class _CaseInsensitiveGetter(Getter[Mapping[str, Any]]):
    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        for name, value in carrier.items():
            if name.lower() == key.lower():
                return [value] if isinstance(value, str) else list(value)
        return None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier.keys())


_getter = _CaseInsensitiveGetter()


def extract_http_context(headers: Mapping[str, Any]) -> otel_context.Context:
    """Context to use as parent for a request carrying ``traceparent``."""
    return _propagator.extract(headers, getter=_getter)


def grpc_metadata() -> list[tuple[str, str]]:
    """Current trace context as gRPC metadata (lower-case keys, as gRPC requires)."""
    return [(k.lower(), v) for k, v in inject_http_headers({}).items()]


def context_from_grpc_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> otel_context.Context:
    carrier = {
        key: value.decode() if isinstance(value, bytes) else value
        for key, value in (metadata or ())
    }
    return extract_http_context(carrier)
