"""Gateway HTTP API: submissions, dry runs, status, admin.

Thin: read the body into a :class:`SubmissionRequest` (:mod:`qmtl.foundation.wire`),
call the core, map domain errors with the shared table.  Bodies over ``gateway.max_request_bytes``
are refused before they are read; large DAGs are validated off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from qmtl.foundation.access import AdminGuard, check_bearer, is_exposed
from qmtl.foundation.blocking import run_blocking
from qmtl.foundation.contracts import SubmissionRequest, check_field
from qmtl.foundation.errors import (
    QmtlError,
    Unavailable,
    UnknownStrategy,
)
from qmtl.foundation.faults import FaultSet
from qmtl.foundation.tracing import extract_http_context, get_tracer
from qmtl.foundation.webapp import (
    BodyLimit,
    SafeJSONResponse,
    error_response,
    http_status,
    install_common_routes,
    install_fault_routes,
)
from qmtl.foundation.wire import decode_submission
from qmtl.services.gateway import metrics
from qmtl.services.gateway.admission import Admission
from qmtl.services.gateway.faults import drill_error
from qmtl.services.gateway.service import INLINE_BYTES, GatewayService, Outcome

__all__ = ["create_app"]

_tracer = get_tracer("qmtl.gateway")
#: Status recorded for a client that went away mid-request (no answer reaches it).
CLIENT_CLOSED = 499


def create_app(service: GatewayService, *, faults: FaultSet | None = None) -> FastAPI:
    gw = service.settings
    app = FastAPI(
        default_response_class=SafeJSONResponse, title="QMTL Gateway", docs_url=None, redoc_url=None
    )
    install_common_routes(app)

    def refused(method: str, path: str, status: int, elapsed_ms: float) -> None:
        if method == "POST" and path == "/strategies":
            metrics.observe_latency(elapsed_ms, status)

    app.add_middleware(BodyLimit, limit=gw.max_request_bytes, on_refused=refused)

    def backlog() -> int:
        return service.backlog

    def drill_backlog() -> int:  # shed_load: as if the retry backlog were over its bound
        assert faults is not None
        return gw.max_pending_submissions if faults.shed_load else service.backlog

    app.add_middleware(
        Admission, max_in_flight=gw.max_in_flight_submissions, max_bytes=gw.max_in_flight_bytes,
        max_backlog=gw.max_pending_submissions,
        backlog=backlog if faults is None else drill_backlog,
        body_limit=gw.max_request_bytes, on_refused=refused,
    )  # fmt: skip
    admin = Depends(AdminGuard(gw.host, gw.admin_token))
    exposed = is_exposed(gw.host)
    limit = gw.max_request_bytes

    async def validated(raw: bytes) -> tuple[SubmissionRequest, int]:
        if len(raw) <= INLINE_BYTES:
            return decode_submission(raw, limit)
        return await run_blocking(decode_submission, raw, limit)

    submit_core: Callable[[SubmissionRequest], Awaitable[Outcome]] = service.submit
    if faults is not None:

        async def submit_core(request: SubmissionRequest) -> Outcome:
            if drill_error(faults):
                raise Unavailable("the Gateway is failing this submission (fault injection)")
            return await service.submit(request)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return await service.status()

    @app.post("/strategies")
    async def submit(request: Request) -> JSONResponse:
        started = time.perf_counter()
        code = 500
        parent = extract_http_context(request.headers)
        with _tracer.start_as_current_span("gateway.submit", context=parent) as span:
            try:
                check_bearer(
                    request.headers.get("authorization"), gw.submit_token, exposed=exposed,
                    what="POST /strategies", token_key="gateway.submit_token",
                )  # fmt: skip
                try:
                    raw = await request.body()
                except ClientDisconnect:
                    # Gone before its body arrived (or cut at the body deadline): nothing
                    # was accepted.  Counted as nginx does, 499, never as our 5xx.
                    code = CLIENT_CLOSED
                    span.set_attribute("qmtl.error", "client_disconnected")
                    return SafeJSONResponse({}, status_code=CLIENT_CLOSED)
                submission, _nodes = await validated(raw)
                span.set_attribute("qmtl.strategy_id", submission.strategy_id)
                outcome = await submit_core(submission)
                code = 202 if outcome.queued else 200
                return SafeJSONResponse(outcome.body, status_code=code)
            except QmtlError as exc:
                span.set_attribute("qmtl.error", exc.code)
                code = http_status(exc)
                return error_response(exc)
            finally:
                metrics.observe_latency((time.perf_counter() - started) * 1000.0, code)

    @app.post("/strategies/dry-run")
    async def dry_run(request: Request) -> SafeJSONResponse:
        submission, nodes = await validated(await request.body())
        return SafeJSONResponse({"dry_run": True, "valid": True, "nodes": nodes,
                             "strategy_id": submission.strategy_id,
                             "submission_id": submission.submission_id(),
                             "world_id": submission.world_id,
                             "execution_domain": submission.execution_domain})  # fmt: skip

    @app.get("/submissions/{submission_id}")
    async def submission_status(submission_id: str) -> SafeJSONResponse:
        check_field("submission_id", submission_id)
        sub = await service.submission(submission_id)
        return SafeJSONResponse(sub.as_dict())

    @app.get("/strategies/{strategy_id}/status")
    async def strategy_status(strategy_id: str) -> SafeJSONResponse:
        check_field("strategy_id", strategy_id)
        sub = await service.latest(strategy_id)
        if sub is None:
            raise UnknownStrategy(f"no submission for strategy {strategy_id!r}")
        return SafeJSONResponse(sub.as_dict())

    if faults is not None:
        install_fault_routes(app, faults, admin)

    return app
