"""Pieces every QMTL FastAPI service shares: /metrics, the error table, body limits.

Handlers raise the domain errors of :mod:`qmtl.foundation.errors`;
:mod:`qmtl.foundation.http_errors` maps them to status codes once, for every service,
and every error body has the same shape: ``{"error": code, "message": ..., ...}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from qmtl.foundation import exposition, strictjson
from qmtl.foundation.errors import (
    BadRequest,
    InvalidJson,
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    QmtlError,
)
from qmtl.foundation.faults import FaultSet
from qmtl.foundation.http_errors import HTTP_STATUS, http_status

__all__ = [
    "HTTP_STATUS",
    "BodyLimit",
    "SafeJSONResponse",
    "StrictJsonRequest",
    "StrictJsonRoute",
    "error",
    "error_response",
    "http_status",
    "install_common_routes",
    "install_fault_routes",
    "metrics_response",
]


class SafeJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error message echoing hostile input (a lone
    surrogate, say) still renders, where UTF-8 encoding of the raw text would raise."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()


class StrictJsonRequest(Request):
    """A request whose JSON body is read by :func:`strictjson.loads`: ``NaN`` and the
    infinities are refused at the door, so nothing stored can break a later answer."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = strictjson.loads(body, "body")
            except ValueError as exc:
                # FastAPI turns exactly this error into its json_invalid validation error.
                raise json.JSONDecodeError(str(exc), body.decode("latin-1"), 0) from None
        return self._json


class StrictJsonRoute(APIRoute):
    """Routes whose handlers see :class:`StrictJsonRequest` (FastAPI's custom route idiom)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict


def error_response(exc: QmtlError) -> JSONResponse:
    """``exc`` as the one error shape, with ``Retry-After`` when it is a load refusal."""
    headers = {"retry-after": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
    return SafeJSONResponse(exc.body(), status_code=http_status(exc), headers=headers)


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """The one error shape of every QMTL HTTP API: ``{"error": code, "message": ...}``."""
    return SafeJSONResponse({"error": code, "message": message, **extra}, status_code=status)


def metrics_response(accept: str | None) -> Response:
    """The registry in the format the scraper asks for (OpenMetrics carries exemplars)."""
    body, content_type = exposition.render(accept)
    return Response(body, media_type=content_type)


def install_common_routes(app: FastAPI) -> None:
    """/metrics, the error handlers and strict JSON bodies; call before adding routes."""
    app.router.route_class = StrictJsonRoute

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint(request: Request) -> Response:
        response = metrics_response(request.headers.get("accept"))
        # A scrape on a fresh connection each time: a listener that can no longer accept
        # one is then down for Prometheus too (see qmtl.foundation.webappserver).
        response.headers["connection"] = "close"
        return response

    @app.exception_handler(QmtlError)
    async def domain_error(_request: Request, exc: QmtlError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Never Starlette's plain-text "Internal Server Error": clients parse JSON.
        return error(500, "internal", f"internal error ({type(exc).__name__}); see the service log")

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        detail = (
            exc.detail
            if isinstance(exc.detail, dict)
            else {"error": "http_error", "message": str(exc.detail)}
        )
        return SafeJSONResponse(detail, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        for e in errors:
            if e.get("type") == "json_invalid":
                reason = (e.get("ctx") or {}).get("error") or "body is not valid JSON"
                return error_response(InvalidJson(str(reason)))
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in errors
        )
        return error_response(InvalidRequest(problems))


def install_fault_routes(app: FastAPI, faults: FaultSet, guard: Any) -> None:
    """``GET``/``POST``/``DELETE /admin/faults`` over ``faults``, behind ``guard`` (a
    FastAPI dependency): the drill switches of every service, read, set and cleared."""

    @app.get("/admin/faults", dependencies=[guard])
    def get_faults() -> dict[str, Any]:
        return faults.as_dict()

    @app.post("/admin/faults", dependencies=[guard])
    def set_faults(changes: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        return faults.update(changes)

    @app.delete("/admin/faults", dependencies=[guard])
    def clear_faults() -> dict[str, Any]:
        return faults.clear()


class _TooLarge(Exception):
    pass


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes *before* reading them.

    A declared ``Content-Length`` over the limit is answered 413 at once, without
    reading a byte; a streamed (chunked) body is counted as it arrives and reading
    stops at the limit.  A malformed ``Content-Length`` is a :class:`BadRequest`.
    """

    def __init__(
        self,
        app: Any,
        limit: int,
        on_refused: Callable[[str, str, int, float], None] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        #: Called as (method, path, status, elapsed ms) for every request refused here, so
        #: services can count these answers like any other (e.g. gateway_submissions_total).
        self.on_refused = on_refused

    async def _reply(self, send: Send, exc: QmtlError) -> int:
        status = http_status(exc)
        body = SafeJSONResponse(exc.body()).body
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def refuse(exc: QmtlError) -> None:
            status = await self._reply(send, exc)
            if self.on_refused is not None:
                elapsed = (time.perf_counter() - started) * 1000.0
                self.on_refused(scope.get("method", ""), scope.get("path", ""), status, elapsed)

        too_large = (
            f"request body is over the {self.limit}-byte limit; split the strategy or raise "
            "the service's max request size"
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                    if declared < 0:
                        raise ValueError
                except ValueError:
                    await refuse(BadRequest("malformed Content-Length"))
                    return
                if declared > self.limit:
                    await refuse(PayloadTooLarge(too_large))
                    return
        received = 0
        responded = False

        async def limited_receive() -> MutableMapping[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: MutableMapping[str, Any]) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not responded:
                await refuse(PayloadTooLarge(too_large))
