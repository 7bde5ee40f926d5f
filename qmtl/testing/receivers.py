"""In-process receivers standing in for backends that cannot run here.

* :class:`OtlpTraceReceiver` -- an OTLP/HTTP endpoint (``POST /v1/traces``) that
  decodes the protobuf payload with ``opentelemetry-proto`` and keeps the spans.
* :class:`AlertWebhook` -- an Alertmanager webhook receiver.
* :class:`IlpReceiver` -- a QuestDB ILP/HTTP endpoint (``POST /write``) that parses
  the line protocol and keeps the rows.

Each listens on 127.0.0.1 and a free port, runs in a daemon thread and is a context
manager.  They are real protocol peers: the exporters under test talk HTTP to them.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "AlertEvent",
    "AlertWebhook",
    "IlpReceiver",
    "IlpRow",
    "OtlpTraceReceiver",
    "ReceivedSpan",
    "parse_ilp",
]


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


class _BaseReceiver(ABC):
    path = "/"

    def __init__(self, port: int = 0) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive like real OTLP/QuestDB endpoints: clients reuse connections, and
            # an HTTP/1.0 close after every answer shows up as "peer disconnected" retries.
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1
                    receiver._open.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._open.discard(self.connection)
                super().finish()

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

            def do_PUT(self) -> None:
                self.do_POST()

            def do_GET(self) -> None:
                status, payload, ctype = receiver.handle_get(self.path, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        #: TCP connections accepted so far (a client that keeps one alive opens one).
        self.connections = 0
        self._open: set[Any] = set()
        self._server = _Server(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    @abstractmethod
    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        """Answer one POST: (status, body, content type)."""

    def handle_get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        """Answer one GET; receivers that only take POSTs say 404."""
        return 404, b"", "text/plain"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> _BaseReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop like a process that ended: the listener and every kept-alive connection."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

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


@dataclass(frozen=True)
class IlpRow:
    table: str
    symbols: dict[str, str]
    columns: dict[str, Any]
    timestamp_ns: int | None


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes and not preceded by a backslash."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _field_value(raw: str) -> Any:
    if raw.startswith('"') and raw.endswith('"'):
        return _unescape(raw[1:-1])
    if raw.endswith("i"):
        return int(raw[:-1])
    if raw in ("t", "T", "true", "True"):
        return True
    if raw in ("f", "F", "false", "False"):
        return False
    return float(raw)


def parse_ilp(body: str) -> list[IlpRow]:
    """Parse InfluxDB line protocol text as QuestDB accepts it (v1, text values)."""
    rows = []
    simple = "\\" not in body and '"' not in body
    for line in body.split("\n") if simple else _split_unescaped(body, "\n"):
        if not line.strip():
            continue
        if simple:  # fast path: no escapes, no strings
            head, fields, *rest = line.split(" ")
            table, *tags = head.split(",")
            rows.append(
                IlpRow(
                    table,
                    dict(t.split("=", 1) for t in tags),
                    {k: _field_value(v) for k, v in (f.split("=", 1) for f in fields.split(","))},
                    int(rest[0]) if rest and rest[0] else None,
                )
            )
            continue
        sections = _split_unescaped(line, " ")
        head, fields = sections[0], sections[1]
        timestamp = int(sections[2]) if len(sections) > 2 and sections[2] else None
        table, *tags = _split_unescaped(head, ",")
        symbols = dict(_unescape(t).split("=", 1) for t in tags)
        columns = {}
        for item in _split_unescaped(fields, ","):
            key, raw = item.split("=", 1)
            columns[_unescape(key)] = _field_value(raw)
        rows.append(IlpRow(_unescape(table), symbols, columns, timestamp))
    return rows


class IlpReceiver(_BaseReceiver):
    """A QuestDB ILP/HTTP endpoint: ``POST /write`` parses and stores rows.

    ``fail_with`` makes every write answer that HTTP status (error-path tests).
    ``GET /settings`` answers 404 like a server without protocol negotiation, so the
    client falls back to text protocol v1, which this receiver parses.
    """

    def __init__(self, *, fail_with: int | None = None) -> None:
        super().__init__()
        self.fail_with = fail_with
        self._bodies: list[str] = []
        self._parsed: list[IlpRow] = []
        self._row_count = 0
        self.requests = 0

    @property
    def rows(self) -> list[IlpRow]:
        """Rows received so far; bodies are parsed on first access, off the request path."""
        with self._changed:
            bodies, self._bodies = self._bodies, []
        for body in bodies:
            self._parsed.extend(parse_ilp(body))
        return list(self._parsed)

    @property
    def conf(self) -> str:
        return f"http::addr=127.0.0.1:{self.port};"

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        if not path.startswith(("/write", "/api/v2/write")):
            return 404, b"", "text/plain"
        with self._changed:
            self.requests += 1
        if self.fail_with is not None:
            message = (
                b'{"code":"internal error","message":"injected failure","line":1,"errorId":"x"}'
            )
            return self.fail_with, message, "application/json"
        text = body.decode()
        with self._changed:
            self._bodies.append(text)
            self._row_count += sum(1 for line in text.split("\n") if line.strip())
            self._changed.notify_all()
        return 204, b"", "text/plain"

    def wait_for_rows(self, count: int, *, timeout: float) -> list[IlpRow]:
        with self._changed:
            if not self._changed.wait_for(lambda: self._row_count >= count, timeout=timeout):
                raise TimeoutError(
                    f"expected {count} ILP rows within {timeout}s, received {self._row_count}"
                )
        return self.rows


@dataclass(frozen=True)
class AlertEvent:
    status: str  # firing | resolved
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    received_at: float


class AlertWebhook(_BaseReceiver):
    """An Alertmanager ``webhook_configs`` receiver that records every notified alert."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[AlertEvent] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        import json
        import time

        payload = json.loads(body)
        now = time.time()
        with self._changed:
            for alert in payload.get("alerts", []):
                labels = alert.get("labels", {})
                self.events.append(
                    AlertEvent(
                        alert["status"],
                        labels.get("alertname", ""),
                        labels,
                        alert.get("annotations", {}),
                        now,
                    )
                )
            self._changed.notify_all()
        return 200, b"{}", "application/json"

    def wait(
        self,
        alertname: str,
        status: str,
        *,
        since: float,
        timeout: float,
        labels: dict[str, str] | None = None,
    ) -> AlertEvent:
        """The first ``status`` notification of ``alertname`` received after ``since``.

        ``labels`` narrows it to alerts carrying those label values (e.g. one severity
        of an SLO alert that has two).
        """
        wanted = labels or {}

        def match() -> AlertEvent | None:
            for event in self.events:
                if (
                    event.alertname == alertname
                    and event.status == status
                    and event.received_at >= since
                    and all(event.labels.get(k) == v for k, v in wanted.items())
                ):
                    return event
            return None

        with self._changed:
            if not self._changed.wait_for(lambda: match() is not None, timeout=timeout):
                seen = sorted(
                    {(e.alertname, e.status) for e in self.events if e.received_at >= since}
                )
                raise TimeoutError(
                    f"no {status} notification for {alertname} within {timeout:.0f}s; saw {seen}"
                )
            event = match()
            assert event is not None
            return event


class ScriptedHttp(_BaseReceiver):
    """Answers every request with JSON scripted per path prefix and records the requests.

    ``answers`` maps a path prefix to a list of ``(status, json body)``: each request to
    that prefix takes the next one and the last repeats.  With :attr:`connections` a test
    can tell a client that keeps one connection alive from one that opens one per request.
    """

    def __init__(self, answers: dict[str, list[tuple[int, Any]]], port: int = 0) -> None:
        super().__init__(port)
        self.answers = {prefix: list(script) for prefix, script in answers.items()}
        self.requests: list[tuple[str, str]] = []
        #: The headers of each request, in the order of :attr:`requests`.
        self.headers: list[dict[str, str]] = []

    def _answer(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        with self._lock:
            self.requests.append((method, path))
            self.headers.append(headers)
            for prefix, script in self.answers.items():
                if path.startswith(prefix):
                    status, body = script.pop(0) if len(script) > 1 else script[0]
                    return status, json.dumps(body).encode(), "application/json"
        return 404, b'{"error": "not_found"}', "application/json"

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        return self._answer("POST", path, headers)

    def handle_get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        return self._answer("GET", path, headers)
