"""SDK runner HTTP endpoint: /metrics plus the admin actions of the runbooks.

``start_admin_server(port)`` serves, on 127.0.0.1 by default:

* ``GET /metrics`` -- the process registry (OpenMetrics when asked: exemplars)
* ``GET /health``
* ``GET /admin/cross-context`` -- unresolved cross-context hits, last hit, last reset
  (read-only and open, like ``/metrics``)
* ``POST /admin/cross-context/reset`` -- clear them (runbook step 5)
* ``POST /admin/cache/purge`` ``{"node_id": ...}`` -- flush node caches (runbook step 4)
* ``GET|POST|DELETE /admin/faults`` -- drill switches, when the process has any

Admin calls follow the rule of every QMTL listener (``qmtl.foundation.access``):
open on a loopback-only bind, ``Authorization: Bearer <token>`` beyond it, refused when
exposed without a token.  Bodies are JSON objects of at most 64 KiB.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from qmtl.foundation import crosscontext, exposition, strictjson
from qmtl.foundation.access import check_bearer, is_exposed
from qmtl.foundation.errors import (
    BadRequest,
    InvalidJson,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    QmtlError,
    UnknownNode,
)
from qmtl.foundation.faults import FaultSet
from qmtl.foundation.http_errors import http_status
from qmtl.runtime.sdk import metrics

__all__ = [
    "MAX_BODY_BYTES",
    "AdminServer",
    "advertised_url",
    "process_admin_server",
    "purge_caches",
    "start_admin_server",
]

Action = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
MAX_BODY_BYTES = 64 * 1024


def purge_caches(node_id: str | None) -> dict[str, int]:
    """Flush the caches of ``node_id`` (or all); returns items dropped per node."""
    purged = {}
    for nid, cache in list(metrics._caches.items()):
        if node_id is None or nid == node_id:
            purged[nid] = cache.purge()
    return purged


def _purge(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    node_id = body.get("node_id")
    if node_id is not None and not isinstance(node_id, str):
        raise InvalidRequest("node_id must be a string")
    purged = purge_caches(node_id)
    if node_id is not None and not purged:
        raise UnknownNode(f"no cache for node {node_id} in this process")
    return 200, {"service": "sdk", "purged": purged}


def _reset(_body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return 200, {"service": "sdk", "reset_series": crosscontext.reset()}


class AdminServer:
    def __init__(
        self,
        host: str,
        port: int,
        token: str | None,
        actions: dict[str, Action] | None = None,
        faults: FaultSet | None = None,
        on_faults: Callable[[], None] | None = None,
    ) -> None:
        self.token = token
        self.host = host
        self.exposed = is_exposed(host)
        self.faults = faults
        self.actions: dict[str, Action] = {
            "/admin/cross-context/reset": _reset,
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

            def _error(self, exc: QmtlError) -> None:
                self._json(http_status(exc), exc.body())

            def _authorized(self) -> bool:
                try:
                    check_bearer(
                        self.headers.get("Authorization"), server.token, exposed=server.exposed,
                        what=f"{self.command} {self.path}", token_key="sdk.admin_token",
                    )  # fmt: skip
                except QmtlError as exc:
                    self._error(exc)
                    return False
                return True

            def _body(self) -> dict[str, Any]:
                raw_length = self.headers.get("Content-Length", "0") or "0"
                try:
                    length = int(raw_length)
                    if length < 0:
                        raise ValueError
                except ValueError:
                    self.close_connection = True
                    raise BadRequest(f"malformed Content-Length {raw_length[:20]!r}") from None
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    raise PayloadTooLarge(f"body over {MAX_BODY_BYTES} bytes")
                try:
                    body = strictjson.loads(self.rfile.read(length) or b"{}", "body")
                except ValueError as exc:
                    raise InvalidJson(str(exc)) from None
                if not isinstance(body, dict):
                    raise InvalidRequest("body must be a JSON object")
                return body

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/metrics":
                    body, ctype = exposition.render(self.headers.get("Accept"))
                    self._send(200, body, ctype)
                elif path == "/health":
                    self._json(200, {"status": "ok"})
                elif path == "/admin/cross-context":
                    # Open like /metrics (the same counter): the WorldService's promotion
                    # guard reads it without a credential.
                    self._json(200, crosscontext.report("sdk"))
                elif path == "/admin/faults" and server.faults is not None:
                    if self._authorized():
                        self._json(200, server.faults.as_dict())
                else:
                    self._error(NotFound(f"no route {self.path[:200]}"))

            def do_POST(self) -> None:
                path = self.path.split("?")[0]
                faults = path == "/admin/faults" and server.faults is not None
                action = server.actions.get(path)
                if action is None and not faults:
                    self._error(NotFound(f"no route {self.path[:200]}"))
                    return
                if not self._authorized():
                    return
                try:
                    body = self._body()
                    if faults:
                        assert server.faults is not None
                        state = server.faults.update(body)
                        if on_faults is not None:
                            on_faults()
                        self._json(200, state)
                        return
                    assert action is not None
                    status, data = action(body)
                except QmtlError as exc:
                    self._error(exc)
                    return
                self._json(status, data)

            def do_DELETE(self) -> None:
                if self.path.split("?")[0] != "/admin/faults" or server.faults is None:
                    self._error(NotFound(f"no route {self.path[:200]}"))
                    return
                if self._authorized():
                    state = server.faults.clear()
                    if on_faults is not None:
                        on_faults()
                    self._json(200, state)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host or "0.0.0.0", port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True, name="sdk-admin"
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def start_admin_server(
    port: int = 8001,
    host: str = "127.0.0.1",
    *,
    token: str | None = None,
    actions: dict[str, Action] | None = None,
    faults: FaultSet | None = None,
    on_faults: Callable[[], None] | None = None,
) -> AdminServer:
    return AdminServer(host, port, token, actions, faults, on_faults)


_process_server: AdminServer | None = None
_process_lock = threading.Lock()


def process_admin_server() -> AdminServer:
    """This process's admin endpoint, started once on first use from qmtl.yml
    (``sdk.host``, ``sdk.admin_port``, ``sdk.admin_token``).

    If that port is taken (another strategy process on the host), a free port is used and
    said in the log; the URL the promotion guard is given is :func:`advertised_url`.
    """
    global _process_server
    from qmtl.runtime.sdk.telemetry import sdk_config

    with _process_lock:
        if _process_server is None:
            sdk = sdk_config().sdk
            try:
                _process_server = start_admin_server(
                    sdk.admin_port, sdk.host, token=sdk.admin_token
                )
            except OSError as exc:
                _process_server = start_admin_server(0, sdk.host, token=sdk.admin_token)
                logging.getLogger(__name__).warning(
                    "sdk.admin_port %d is not free (%s); this process's admin endpoint is %s",
                    sdk.admin_port, exc.strerror, _process_server.url,
                )  # fmt: skip
        return _process_server


def advertised_url(server: AdminServer) -> str:
    """The admin URL to give the promotion guard: ``sdk.advertise_url``, else the bound one."""
    from qmtl.runtime.sdk.telemetry import sdk_config

    advertise = sdk_config().sdk.advertise_url
    return advertise.rstrip("/") if advertise else server.url
