"""The one way a QMTL service serves HTTP: uvicorn with limits a hostile client cannot outwait.

uvicorn on its own waits for ever for the headers of a connection that trickles them
(its keep-alive timer starts only after a first response) and accepts connections
until the process runs out of file descriptors, so a few thousand slow clients hold a
service unreachable.  :class:`LimitedHttpProtocol` adds, per connection:

* a deadline for the request line and headers (``http.header_timeout_seconds``), from
  the connection's start or the request's first byte: ``408`` and close;
* a deadline for the body once the headers are in (``http.body_timeout_seconds``):
  the connection is closed, the handler sees a disconnect;
* a cap on open connections per client address and in all: ``429`` /  ``503`` and
  close at once, so the listener keeps a descriptor free for the next client.

``/metrics`` answers ``Connection: close`` (see :mod:`qmtl.foundation.webapp`):
each scrape opens a new connection, so a service that cannot accept one shows as down
in Prometheus instead of staying ``up`` over an old keep-alive connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from qmtl.foundation.config import HttpConfig
from qmtl.foundation.errors import ShuttingDown

__all__ = ["LimitedHttpProtocol", "ListenerLimits", "server"]

log = logging.getLogger(__name__)
#: Descriptors kept free below the process limit for files, sockets to dependencies, logs.
_RESERVED_FDS = 128
#: How long an idle keep-alive connection stays open.  Longer than the idle expiry of
#: common clients (httpx: 5 s), so the client drops an idle connection
#: first; with equal timers a request sent as the server closes is lost mid-flight
#: ("server disconnected without sending a response").
KEEP_ALIVE_SECONDS = 20


@dataclass(frozen=True)
class ListenerLimits:
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 4096
    max_connections_per_client: int = 512

    @classmethod
    def from_config(cls, http: HttpConfig) -> ListenerLimits:
        return cls(
            http.header_timeout_seconds, http.body_timeout_seconds, http.max_connections,
            http.max_connections_per_client,
        )  # fmt: skip

    def effective_max_connections(self) -> int:
        """The configured cap, lowered to what the descriptor limit really allows."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(16, min(self.max_connections, int(soft) - _RESERVED_FDS))


def _answer(status: str, code: str, message: str, retry_after: int | None = None) -> bytes:
    body = json.dumps({"error": code, "message": message, "retryable": True}).encode()
    head = [
        f"HTTP/1.1 {status}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and caps above.

    Built per server by :func:`server` (the limits and the per-address counts are class
    attributes of a subclass made there), because uvicorn instantiates the class itself.
    """

    limits: Any = ListenerLimits()
    max_connections: int = ListenerLimits().max_connections
    per_client: Counter[str] = Counter()
    refused: Counter[str] = Counter()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._address = ""
        self._counted = False

    # -- connections -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = self.client[0] if self.client else ""
        if len(self.connections) > self.max_connections:
            self._refuse("503 Service Unavailable", "too_many_connections",
                         "the service has as many connections open as it accepts; retry")  # fmt: skip
            return
        if self.per_client[self._address] >= self.limits.max_connections_per_client:
            self._refuse(
                "429 Too Many Requests", "too_many_connections",
                f"{self.limits.max_connections_per_client} connections from this address are "
                "open already; close some or reuse them",
            )  # fmt: skip
            return
        self.per_client[self._address] += 1
        self._counted = True
        self._arm(self.limits.header_timeout, self._headers_late)

    def _refuse(self, status: str, code: str, message: str) -> None:
        self.refused[code] += 1
        self.transport.write(_answer(status, code, message, retry_after=1))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            self.per_client[self._address] -= 1
            if self.per_client[self._address] <= 0:
                del self.per_client[self._address]
        super().connection_lost(exc)

    # -- deadlines -------------------------------------------------------------------------
    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.refused["header_timeout"] += 1
        self.transport.write(
            _answer("408 Request Timeout", "request_timeout",
                    f"the request headers did not arrive within {self.limits.header_timeout:g}s")
        )  # fmt: skip
        self.transport.close()

    def _body_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.refused["body_timeout"] += 1
            self.transport.close()  # the handler reading the body sees a disconnect

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.limits.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self._arm(self.limits.body_timeout, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


class _AnswerCutRequests:
    """ASGI wrapper: a request cancelled at the end of the shutdown grace, before its
    response started, is answered 503 ``shutting_down`` (retryable) instead of uvicorn's
    bare 500, so a client knows to send it again.  uvicorn cancels request tasks only
    at that moment (a client that hangs up does not cancel its request)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        #: The server it runs in, set once that exists (its ``should_exit`` says "stopping").
        self.server: uvicorn.Server | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if started or self.server is None or not self.server.should_exit:
                raise
            body = ShuttingDown(_CUT_MESSAGE).body()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": json.dumps(body).encode()})


_CUT_MESSAGE = "the server stopped before this request finished; send it again"


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``on_shutdown`` as it starts to shut down: before it
    waits for the requests in flight, so what holds a request open (a long poll) can
    answer it now rather than at the end of the grace period."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._on_shutdown is not None:
            try:
                self._on_shutdown()
            except Exception:
                log.exception("shutdown hook failed; waiting for requests in flight anyway")
        await super().shutdown(sockets)


def server(
    app: Any, host: str, port: int, http: HttpConfig,
    on_shutdown: Callable[[], None] | None = None,
) -> uvicorn.Server:  # fmt: skip
    """A uvicorn server for ``app`` whose connections obey the ``http`` limits.

    At SIGTERM it stops accepting, gives requests in flight ``http.shutdown_grace_seconds``
    to finish and then cancels them: a stop never outlasts an orchestrator's deadline.
    """
    limits = ListenerLimits.from_config(http)
    protocol = type(
        "QmtlHttpProtocol",
        (LimitedHttpProtocol,),
        {
            "limits": limits,
            "max_connections": limits.effective_max_connections(),
            "per_client": Counter(),
            "refused": Counter(),
        },
    )
    wrapped = _AnswerCutRequests(app)
    config = uvicorn.Config(
        wrapped, host=host, port=port, log_level="warning", lifespan="off", http=protocol,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=http.shutdown_grace_seconds,  # type: ignore[arg-type]
    )  # fmt: skip
    wrapped.server = _Server(config, on_shutdown)
    return wrapped.server
