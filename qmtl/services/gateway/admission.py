"""Admission control: the Gateway takes the work it can finish, and says ``429`` to the rest.

Without it a burst far above capacity (2,000 submissions/s against ~320) was accepted
whole: seconds of latency for everyone and memory growing with the queue.  This ASGI
middleware refuses a submission *before its body is read* when

* ``gateway.max_in_flight_submissions`` are being received or worked on,
* their declared bodies add up to ``gateway.max_in_flight_bytes`` (one is always let in,
  so the largest body the size limit allows still goes through), or
* ``gateway.max_pending_submissions`` wait in the log for a retry (the retry queue).

The answer is ``429 {"error": "overloaded", "retryable": true}`` with ``Retry-After``;
the SDK waits that long and sends the same body again.  Refusals are counted like any
answer (``gateway_submissions_total{code="429"}``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qmtl.foundation.errors import Overloaded
from qmtl.foundation.webapp import Receive, Scope, Send, error_response
from qmtl.services.gateway import metrics

__all__ = ["Admission"]

#: Seconds a client is asked to wait: a moment while work is in flight, longer while the
#: retry backlog drains (it is worked off every ``retry_interval_seconds``).
_BUSY_RETRY, _BACKLOG_RETRY = 1, 5


class Admission:
    def __init__(
        self,
        app: Any,
        *,
        max_in_flight: int,
        max_bytes: int,
        max_backlog: int,
        backlog: Callable[[], int],
        body_limit: int,
        on_refused: Callable[[str, str, int, float], None] | None = None,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        self.max_backlog = max_backlog
        self.backlog = backlog
        self.body_limit = body_limit
        self.on_refused = on_refused
        self.in_flight = 0
        self.bytes = 0

    def _declared(self, scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return max(0, min(int(value), self.body_limit))
                except ValueError:
                    return self.body_limit  # BodyLimit answers it; count it at its worst
        return self.body_limit  # chunked: it may grow to the limit

    def _refusal(self, declared: int) -> Overloaded | None:
        if self.in_flight >= self.max_in_flight:
            return Overloaded(
                f"{self.in_flight} submissions are in flight (gateway.max_in_flight_submissions); "
                "retry after the Retry-After delay",
                retry_after=_BUSY_RETRY,
            )
        if self.bytes and self.bytes + declared > self.max_bytes:
            return Overloaded(
                f"{self.bytes} bytes of submissions are in flight (gateway.max_in_flight_bytes); "
                "retry after the Retry-After delay",
                retry_after=_BUSY_RETRY,
            )
        waiting = self.backlog()
        if waiting >= self.max_backlog:
            return Overloaded(
                f"{waiting} submissions wait for a retry (gateway.max_pending_submissions); the "
                "DAG Manager is not keeping up -- retry after the Retry-After delay",
                retry_after=_BACKLOG_RETRY,
            )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or not scope.get("path", "").startswith("/strategies")
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        declared = self._declared(scope)
        refusal = self._refusal(declared)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            if self.on_refused is not None:
                elapsed = (time.perf_counter() - started) * 1000.0
                self.on_refused(scope.get("method", ""), scope.get("path", ""), 429, elapsed)
            return
        self.in_flight += 1
        self.bytes += declared
        metrics.gateway_submissions_in_flight.set(self.in_flight)
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.bytes -= declared
            metrics.gateway_submissions_in_flight.set(self.in_flight)
