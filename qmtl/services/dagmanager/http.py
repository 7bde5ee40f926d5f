"""DAG Manager HTTP surface: /health, /status, /metrics and the admin endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI

from qmtl.foundation.access import AdminGuard
from qmtl.foundation.blocking import run_blocking
from qmtl.foundation.errors import BackendUnavailable, UnknownStrategy
from qmtl.foundation.webapp import (
    BodyLimit,
    SafeJSONResponse,
    install_common_routes,
    install_fault_routes,
)
from qmtl.services.dagmanager.service import DagManagerService

__all__ = ["create_app"]

#: Admin bodies are tiny; DAGs arrive over gRPC, not here.
ADMIN_BODY_LIMIT = 64 * 1024


def create_app(service: DagManagerService) -> FastAPI:
    app = FastAPI(
        default_response_class=SafeJSONResponse,
        title="QMTL DAG Manager",
        docs_url=None,
        redoc_url=None,
    )
    install_common_routes(app)
    app.add_middleware(BodyLimit, limit=ADMIN_BODY_LIMIT)
    admin = Depends(AdminGuard(service.config.host, service.config.admin_token))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return await service.status()

    @app.post("/admin/gc-trigger", dependencies=[admin])
    async def gc_trigger() -> SafeJSONResponse:
        try:
            report = await run_blocking(service.gc.sweep)
        except Exception as exc:
            service.gc.failed_runs += 1
            raise BackendUnavailable(f"GC run failed: {exc}") from None
        return SafeJSONResponse(report.as_dict())

    @app.post("/admin/strategies/{strategy_id}/retire", dependencies=[admin])
    async def retire(strategy_id: str) -> SafeJSONResponse:
        if not await run_blocking(service.store.retire_strategy, strategy_id):
            raise UnknownStrategy(f"no strategy {strategy_id!r} in the graph store")
        return SafeJSONResponse({"strategy_id": strategy_id, "retired": True})

    # Open like /metrics, which carries the same counter: the promotion guard reads it
    # without a credential.
    @app.get("/admin/cross-context")
    def cross_context() -> dict[str, Any]:
        return service.cross_context_report()

    @app.post("/admin/cross-context/reset", dependencies=[admin])
    def cross_context_reset() -> dict[str, Any]:
        return {"service": "dagmanager", "reset_series": service.reset_cross_context()}

    if service.faults is not None:
        install_fault_routes(app, service.faults, admin)

    return app
