"""In-process receivers standing in for backends that cannot run here.

* :class:`OtlpTraceReceiver` -- an OTLP/HTTP endpoint (``POST /v1/traces``) that
  decodes the protobuf payload with ``opentelemetry-proto`` and keeps the spans.

Each listens on 127.0.0.1 and a free port, runs in a daemon thread and is a context
manager.  They are real protocol peers: the exporters under test talk HTTP to them.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["OtlpTraceReceiver", "ReceivedSpan"]


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _BaseReceiver:
    path = "/"

    def __init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                status, payload, ctype = receiver.handle(self.path, body, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        raise NotImplementedError  # pragma: no cover - overridden by every receiver

    def start(self) -> _BaseReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OtlpTraceReceiver(_BaseReceiver):
    """Collects spans sent by OTLP/HTTP protobuf exporters.

    >>> with OtlpTraceReceiver() as rx:              # doctest: +SKIP
    ...     setup_tracing("gateway", rx.endpoint)
    ...     rx.wait_for_spans(1, timeout=10)
    """

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ReceivedSpan] = []
        self.requests = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        if path != "/v1/traces":
            return 404, b"", "text/plain"
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            service = ""
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    service = attr.value.string_value
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {
                        a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                        for a in span.attributes
                    }
                    received.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=attributes,
                        )
                    )
        with self._changed:
            self.requests += 1
            self.spans.extend(received)
            self._changed.notify_all()
        response = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return 200, response, "application/x-protobuf"

    def wait_for_spans(self, count: int, *, timeout: float) -> list[ReceivedSpan]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.spans) >= count, timeout=timeout):
                raise TimeoutError(
                    f"expected {count} spans within {timeout}s, received {len(self.spans)}"
                )
            return list(self.spans)
