"""SDK runner HTTP endpoint: /metrics plus the admin actions of the runbooks.

``start_admin_server(port)`` serves, on 127.0.0.1 by default:

* ``GET /metrics`` -- the process registry (same as ``metrics.start_metrics_server``)
* ``GET /admin/cross-context`` -- unresolved cross-context hits (label sets)
* ``POST /admin/cross-context/reset`` -- clear them (runbook step 5)
* ``POST /admin/cache/purge`` ``{"node_id": ...}`` -- flush node caches (runbook step 4)

Beyond loopback every admin call needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from qmtl.foundation.common.admin import is_loopback
from qmtl.foundation.metrics import clear_series, nonzero_series
from qmtl.runtime.sdk import metrics

__all__ = ["AdminServer", "cross_context_hits", "purge_caches", "start_admin_server"]

Action = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def cross_context_hits() -> list[dict[str, Any]]:
    return nonzero_series(metrics.cross_context_cache_hit_total)


def purge_caches(node_id: str | None) -> dict[str, int]:
    """Flush the caches of ``node_id`` (or all); returns items dropped per node."""
    purged = {}
    for nid, cache in list(metrics._caches.items()):
        if node_id is None or nid == node_id:
            purged[nid] = cache.purge()
    return purged


class AdminServer:
    def __init__(
        self, host: str, port: int, token: str | None, actions: dict[str, Action] | None = None
    ) -> None:
        self.token = token
        self.host = host
        self.actions: dict[str, Action] = {
            "/admin/cross-context/reset": lambda _body: (
                200,
                {"service": "sdk", "reset_series": _reset()},
            ),
            "/admin/cache/purge": _purge,
            **(actions or {}),
        }
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, data: dict[str, Any]) -> None:
                self._send(status, json.dumps(data).encode())

            def _authorized(self) -> bool:
                if server.token:
                    given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    if not hmac.compare_digest(given.encode(), server.token.encode()):
                        self._json(
                            401,
                            {"error": "admin_auth_required", "message": "Bearer token required"},
                        )
                        return False
                elif not is_loopback(server.host):
                    self._json(
                        403,
                        {
                            "error": "admin_disabled",
                            "message": "set an admin token to expose admin endpoints",
                        },
                    )
                    return False
                return True

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                elif self.path == "/health":
                    self._json(200, {"status": "ok"})
                elif self.path == "/admin/cross-context":
                    if self._authorized():
                        self._json(200, {"service": "sdk", "hits": cross_context_hits()})
                else:
                    self._json(404, {"error": "not_found", "message": self.path})

            def do_POST(self) -> None:
                action = server.actions.get(self.path.split("?")[0])
                if action is None:
                    self._json(404, {"error": "not_found", "message": self.path})
                    return
                if not self._authorized():
                    return
                length = int(self.headers.get("Content-Length", "0") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._json(400, {"error": "invalid_json", "message": "body must be JSON"})
                    return
                status, data = action(body)
                self._json(status, data)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True, name="sdk-admin"
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _reset() -> int:
    return clear_series(metrics.cross_context_cache_hit_total)


def _purge(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    node_id = body.get("node_id")
    if node_id is not None and not isinstance(node_id, str):
        return 400, {"error": "invalid_node_id", "message": "node_id must be a string"}
    purged = purge_caches(node_id)
    if node_id is not None and not purged:
        return 404, {
            "error": "unknown_node",
            "message": f"no cache for node {node_id} in this process",
        }
    return 200, {"service": "sdk", "purged": purged}


def start_admin_server(
    port: int = 8001,
    host: str = "127.0.0.1",
    *,
    token: str | None = None,
    actions: dict[str, Action] | None = None,
) -> AdminServer:
    return AdminServer(host, port, token, actions)
