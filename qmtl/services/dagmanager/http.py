"""DAG Manager HTTP surface: /health, /status, /metrics and the admin endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Body, Depends, FastAPI
from fastapi.responses import JSONResponse

from qmtl.foundation.common.admin import AdminGuard
from qmtl.foundation.common.http import error, install_common_routes
from qmtl.services.dagmanager.faults import FaultError
from qmtl.services.dagmanager.service import DagManagerService

__all__ = ["create_app"]


def create_app(service: DagManagerService) -> FastAPI:
    app = FastAPI(title="QMTL DAG Manager", docs_url=None, redoc_url=None)
    install_common_routes(app)
    admin = Depends(AdminGuard(service.config.host, service.config.admin_token))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return await asyncio.to_thread(service.status)

    @app.post("/admin/gc-trigger", dependencies=[admin])
    async def gc_trigger() -> JSONResponse:
        try:
            report = await asyncio.to_thread(service.gc.sweep)
        except Exception as exc:
            service.gc.failed_runs += 1
            return error(503, "gc_failed", f"GC run failed: {exc}")
        return JSONResponse(report.as_dict())

    @app.post("/admin/strategies/{strategy_id}/retire", dependencies=[admin])
    async def retire(strategy_id: str) -> JSONResponse:
        if not await asyncio.to_thread(service.store.retire_strategy, strategy_id):
            return error(404, "unknown_strategy", f"no strategy {strategy_id!r} in the graph store")
        return JSONResponse({"strategy_id": strategy_id, "retired": True})

    @app.get("/admin/faults", dependencies=[admin])
    def get_faults() -> dict[str, Any]:
        return service.faults.as_dict()

    @app.post("/admin/faults", dependencies=[admin])
    def set_faults(changes: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI idiom
        try:
            return JSONResponse(service.set_faults(changes))
        except FaultError as exc:
            return error(400, "unknown_fault", str(exc))

    @app.delete("/admin/faults", dependencies=[admin])
    def clear_faults() -> dict[str, Any]:
        return service.clear_faults()

    @app.get("/admin/cross-context", dependencies=[admin])
    def cross_context() -> dict[str, Any]:
        return {"service": "dagmanager", "hits": service.cross_context_hits()}

    @app.post("/admin/cross-context/reset", dependencies=[admin])
    def cross_context_reset() -> dict[str, Any]:
        return {"service": "dagmanager", "reset_series": service.reset_cross_context()}

    return app
