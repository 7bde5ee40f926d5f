"""WorldService HTTP API (FastAPI)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

from fastapi import Body, Depends, FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from qmtl.foundation.common.admin import AdminGuard
from qmtl.foundation.common.http import error, install_common_routes
from qmtl.services.controlbus import Envelope
from qmtl.services.worldservice.service import STAGES, GuardBlocked, WorldService

__all__ = ["create_app"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class WorldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    world_id: str = Field(pattern=_ID.pattern)


class AllocationsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allocations: dict[str, float] = Field(description="strategy_id -> weight")


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str | None = Field(default=None, pattern=_ID.pattern)
    activate: list[str] = Field(default_factory=list)
    deactivate: list[str] = Field(default_factory=list)
    wait: bool = False


def create_app(service: WorldService) -> FastAPI:
    app = FastAPI(title="QMTL WorldService", docs_url=None, redoc_url=None)
    install_common_routes(app)
    admin = Depends(AdminGuard(service.ws.host, service.ws.admin_token))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status")
    def status() -> dict[str, Any]:
        return service.status()

    @app.post("/worlds", status_code=201)
    def create_world(body: WorldIn) -> JSONResponse:
        created = service.store.create_world(body.world_id)
        return JSONResponse(
            {"world_id": body.world_id, "created": created}, status_code=201 if created else 200
        )

    @app.get("/worlds")
    def worlds() -> dict[str, Any]:
        return {"worlds": service.store.worlds()}

    @app.get("/worlds/{world_id}")
    def world(world_id: str) -> JSONResponse:
        found = service.store.world(world_id)
        if found is None:
            return error(
                404, "unknown_world", f"no world {world_id!r}; create it with POST /worlds"
            )
        return JSONResponse(found)

    @app.put("/worlds/{world_id}/allocations")
    def put_allocations(world_id: str, body: AllocationsIn) -> JSONResponse:
        if service.store.world(world_id) is None:
            return error(
                404, "unknown_world", f"no world {world_id!r}; create it with POST /worlds"
            )
        bad = {
            k: v for k, v in body.allocations.items() if not (0.0 <= v <= 1.0) or not _ID.match(k)
        }
        if bad:
            return error(
                422,
                "invalid_allocation",
                f"weights must be within [0, 1] and ids [A-Za-z0-9_.-]: {bad}",
            )
        service.store.put_allocations(world_id, body.allocations, time.time())
        return JSONResponse({"world_id": world_id, "updated": len(body.allocations)})

    @app.get("/allocations")
    def allocations(world_id: str | None = Query(default=None)) -> JSONResponse:
        if world_id is not None and service.store.world(world_id) is None:
            return error(404, "unknown_world", f"no world {world_id!r}")
        now = time.time()
        rows = service.store.allocations(world_id)
        for row in rows:
            row["stale"] = now - row["updated_at"] > service.ws.stale_after_seconds
        return JSONResponse({"allocations": rows})

    @app.post("/worlds/{world_id}/apply")
    async def apply(world_id: str, body: ApplyIn) -> JSONResponse:
        plan = {"activate": body.activate, "deactivate": body.deactivate}
        try:
            run_id = await asyncio.to_thread(service.begin_apply, world_id, plan, body.run_id)
        except KeyError:
            return error(
                404, "unknown_world", f"no world {world_id!r}; create it with POST /worlds"
            )
        except GuardBlocked as exc:
            if exc.unavailable:
                return error(503, "promotion_guard_unavailable", str(exc))
            return error(409, "promotion_blocked", str(exc), hits=exc.hits)
        except RuntimeError as exc:
            return error(409, "apply_in_progress", str(exc))
        if body.wait:
            run = await asyncio.to_thread(service.run_apply, world_id, run_id, plan)
            return JSONResponse(run, status_code=200 if run.get("status") == "success" else 502)
        threading.Thread(
            target=service.run_apply, args=(world_id, run_id, plan), daemon=True
        ).start()
        return JSONResponse(
            {"run_id": run_id, "world_id": world_id, "status": "running"}, status_code=202
        )

    @app.get("/worlds/{world_id}/runs/{run_id}")
    def run(world_id: str, run_id: str) -> JSONResponse:
        found = service.store.run(run_id)
        if found is None or found["world_id"] != world_id:
            return error(404, "unknown_run", f"no apply run {run_id!r} in world {world_id!r}")
        return JSONResponse(found)

    @app.get("/promotion-guard")
    def guard() -> JSONResponse:
        try:
            hits = service.guard_hits()
        except GuardBlocked as exc:
            return error(503, "promotion_guard_unavailable", str(exc))
        return JSONResponse({"blocked": bool(hits), "hits": hits})

    # -- the ControlBus log this service hosts (embedded backend) ------------------------------
    @app.get("/controlbus/events")
    async def events(
        after: int = Query(default=-1), wait: float = Query(default=0.0, ge=0, le=30)
    ) -> JSONResponse:
        if service.event_log is None:
            return error(
                404, "controlbus_not_hosted", "this WorldService uses the Kafka ControlBus"
            )
        log = service.event_log
        if after < 0:
            return JSONResponse({"head": log.head, "last": log.head, "events": []})
        last, found = await asyncio.to_thread(log.read, after, wait=wait)
        return JSONResponse({"head": log.head, "last": last, "events": [e.__dict__ for e in found]})

    @app.post("/controlbus/events", status_code=202)
    def publish(raw: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI idiom
        if service.event_log is None:
            return error(
                404, "controlbus_not_hosted", "this WorldService uses the Kafka ControlBus"
            )
        try:
            envelope = Envelope.from_dict(raw)
        except (TypeError, ValueError) as exc:
            return error(422, "invalid_envelope", str(exc))
        return JSONResponse({"seq": service.event_log.append(envelope)}, status_code=202)

    # -- admin ---------------------------------------------------------------------------------
    @app.post("/admin/faults", dependencies=[admin])
    def faults(changes: dict[str, Any] = Body(...)) -> JSONResponse:  # noqa: B008 - FastAPI idiom
        unknown = set(changes) - {"fail_stage"}
        stage = changes.get("fail_stage")
        if unknown or (stage is not None and stage not in STAGES):
            return error(
                400, "unknown_fault", f"known: fail_stage in {STAGES} or null; got {changes}"
            )
        service.fail_stage = stage
        return JSONResponse({"fail_stage": service.fail_stage})

    @app.delete("/admin/faults", dependencies=[admin])
    def clear_faults() -> dict[str, Any]:
        service.fail_stage = None
        return {"fail_stage": None}

    @app.post("/admin/stale-ratio/refresh", dependencies=[admin])
    def refresh() -> dict[str, Any]:
        return {"ratios": service.refresh_stale_ratio()}

    return app
