"""``qmtl service dagmanager metrics [--port 8000]``: the DAG Manager's live metrics on a port.

The DAG Manager already serves ``/metrics`` on its HTTP port; this command makes the
same live values available on another port (8000 by default), for a scrape
config or a firewall rule that expects them there.  Every scrape is forwarded to the
DAG Manager configured in ``qmtl.yml`` (``Accept`` included, so OpenMetrics exemplars
pass through).  There is never a registry of its own: when the DAG Manager does not
answer, the scrape fails (503) and ``up`` says so, instead of a page of zeros.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from qmtl.foundation.config import DagManagerConfig

__all__ = ["Exporter", "main", "upstream_url"]


def upstream_url(config: DagManagerConfig) -> str:
    return f"{config.url}/metrics"


class Exporter:
    """Serves ``GET /metrics`` by forwarding to ``upstream``; ``stop()`` ends it."""

    def __init__(self, upstream: str, host: str, port: int) -> None:
        self.upstream = upstream
        client = httpx.Client(timeout=10)
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/health":
                    self._send(200, b'{"status": "ok"}', "application/json")
                    return
                if self.path.split("?")[0] != "/metrics":
                    self._send(404, b"not found; scrape /metrics\n", "text/plain")
                    return
                accept = self.headers.get("Accept")
                try:
                    answer = client.get(
                        exporter.upstream, headers={"Accept": accept} if accept else {}
                    )
                    answer.raise_for_status()
                except httpx.HTTPError as exc:
                    message = f"DAG Manager at {exporter.upstream} does not answer: {exc}\n"
                    self._send(503, message.encode(), "text/plain")
                    return
                self._send(200, answer.content, answer.headers.get("content-type", "text/plain"))

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def main(args: argparse.Namespace) -> int:
    upstream = upstream_url(args.qmtl_config.dagmanager)
    try:
        httpx.get(upstream, timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        print(
            f"qmtl: no DAG Manager answers at {upstream} ({type(exc).__name__}); start it with "
            "`qmtl service dagmanager server` or point dagmanager.host/http_port in qmtl.yml at it",
            file=sys.stderr,
        )
        return 1
    try:
        exporter = Exporter(upstream, args.host, args.port)
    except OSError as exc:
        why = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(
            f"qmtl: cannot serve metrics on {args.host}:{args.port}: {why}; choose another --port",
            file=sys.stderr,
        )
        return 1
    print(f"DAG Manager metrics from {upstream} on {exporter.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    exporter.stop()
    return 0
