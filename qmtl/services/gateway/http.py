"""Gateway HTTP API: submissions, dry runs, status, admin."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qmtl.foundation.common.admin import AdminGuard
from qmtl.foundation.common.http import error, install_common_routes
from qmtl.foundation.common.tracing import extract_http_context, get_tracer
from qmtl.foundation.dag import DagError, parse_dag
from qmtl.services.gateway import metrics
from qmtl.services.gateway.service import GatewayService

__all__ = ["create_app"]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_tracer = get_tracer("qmtl.gateway")


class SubmissionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy_id: str | None = Field(default=None, pattern=_ID)
    dag: dict[str, Any] | str
    world_id: str = Field(default="", pattern=r"^$|" + _ID)
    execution_domain: str = Field(default="", pattern=r"^(|backtest|dryrun|live|shadow)$")
    as_of: str = ""
    partition: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


def _validated(raw: bytes, limit: int) -> tuple[dict[str, Any] | None, JSONResponse | None]:
    """Parse + validate a submission; on error return the 4xx response instead."""
    if len(raw) > limit:
        return None, error(
            413,
            "payload_too_large",
            f"request is {len(raw)} bytes, limit {limit}; split the strategy",
        )
    try:
        body = SubmissionIn.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        code = (
            "invalid_json"
            if any(e["type"] == "json_invalid" for e in exc.errors())
            else "invalid_request"
        )
        return None, error(400 if code == "invalid_json" else 422, code, problems)
    dag_json = body.dag if isinstance(body.dag, str) else json.dumps(body.dag, sort_keys=True)
    try:
        dag = parse_dag(dag_json, max_bytes=limit)
    except DagError as exc:
        return None, error(422, "invalid_dag", str(exc))
    strategy_id = body.strategy_id or f"s-{dag.version}"
    request = {
        "strategy_id": strategy_id,
        "dag_json": dag_json,
        "world_id": body.world_id,
        "execution_domain": body.execution_domain,
        "as_of": body.as_of,
        "partition": body.partition,
        "metadata": body.metadata,
        "nodes": len(dag.order),
        "version": dag.version,
        "crc32": dag.crc32,
    }
    return request, None


def create_app(service: GatewayService) -> FastAPI:
    app = FastAPI(title="QMTL Gateway", docs_url=None, redoc_url=None)
    install_common_routes(app)
    admin = Depends(AdminGuard(service.gw.host, service.gw.admin_token))
    limit = service.gw.max_request_bytes

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return await service.status()

    @app.post("/strategies")
    async def submit(request: Request) -> JSONResponse:
        started = time.perf_counter()
        parent = extract_http_context(dict(request.headers))
        with _tracer.start_as_current_span("gateway.submit", context=parent) as span:
            try:
                raw = await request.body()
                validated, problem = _validated(raw, limit)
                if problem is not None:
                    span.set_attribute("qmtl.error", json.loads(problem.body)["error"])
                    return problem
                assert validated is not None
                span.set_attribute("qmtl.strategy_id", validated["strategy_id"])
                outcome = await service.submit(validated)
                return JSONResponse(outcome.body, status_code=outcome.status)
            finally:
                metrics.observe_latency((time.perf_counter() - started) * 1000.0)

    @app.post("/strategies/dry-run")
    async def dry_run(request: Request) -> JSONResponse:
        validated, problem = _validated(await request.body(), limit)
        if problem is not None:
            return problem
        assert validated is not None
        keys = ("strategy_id", "nodes", "version", "crc32", "world_id", "execution_domain")
        return JSONResponse({"dry_run": True, "valid": True, **{k: validated[k] for k in keys}})

    @app.get("/strategies/{strategy_id}/status")
    async def strategy_status(strategy_id: str) -> JSONResponse:
        if not re.match(_ID, strategy_id):
            return error(422, "invalid_strategy_id", "strategy ids use [A-Za-z0-9_.:-]")
        sub = await asyncio.to_thread(service.log.latest_for, strategy_id)
        if sub is None:
            return error(404, "unknown_strategy", f"no submission for strategy {strategy_id!r}")
        return JSONResponse(sub.as_dict())

    @app.post("/admin/faults", dependencies=[admin])
    def faults(changes: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI idiom
        known = {
            "log_write_fail": bool,
            "ack_delay_ms": (int, float),
            "submission_delay_ms": (int, float),
        }
        for name, value in changes.items():
            kind = known.get(name)
            if (
                kind is None
                or not isinstance(value, kind)
                or (kind is not bool and isinstance(value, bool))
            ):
                return error(
                    400, "unknown_fault", f"known faults: {sorted(known)}; got {name}={value!r}"
                )
        if "log_write_fail" in changes:
            service.log.fail_writes = changes["log_write_fail"]
        service.ack_delay_ms = float(changes.get("ack_delay_ms", service.ack_delay_ms))
        service.submission_delay_ms = float(
            changes.get("submission_delay_ms", service.submission_delay_ms)
        )
        return JSONResponse({"log_write_fail": service.log.fail_writes, "ack_delay_ms": service.ack_delay_ms,
                             "submission_delay_ms": service.submission_delay_ms})  # fmt: skip

    @app.delete("/admin/faults", dependencies=[admin])
    def clear_faults() -> dict[str, Any]:
        service.log.fail_writes = False
        service.ack_delay_ms = service.submission_delay_ms = 0.0
        return {"cleared": True}

    return app
