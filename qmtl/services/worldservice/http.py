"""WorldService HTTP API (FastAPI).

Reads are open; every state-changing endpoint (worlds, allocations, applies, the
ControlBus log, the guard's sources, admin) goes through the admin guard: open on
loopback, a bearer token beyond it.  Domain errors map with the shared table.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Body, Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from qmtl.foundation.access import AdminGuard
from qmtl.foundation.blocking import run_blocking
from qmtl.foundation.contracts import FIELD_RULES, RUN_ID, STRATEGY_ID, WORLD_ID, anchored
from qmtl.foundation.errors import InvalidRequest, NotFound, QmtlError, UnknownRun
from qmtl.foundation.faults import FaultSet
from qmtl.foundation.webapp import (
    BodyLimit,
    SafeJSONResponse,
    install_common_routes,
    install_fault_routes,
)
from qmtl.services.controlbus import parse_envelope
from qmtl.services.controlbus.metrics import controlbus_invalid_events_total
from qmtl.services.worldservice.models import ApplyPlan
from qmtl.services.worldservice.service import WorldService

__all__ = ["create_app"]


class WorldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    world_id: str = Field(pattern=anchored(WORLD_ID))


class AllocationsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allocations: dict[str, float] = Field(description="strategy_id -> weight", max_length=10_000)


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str | None = Field(default=None, pattern=anchored(RUN_ID))
    activate: list[str] = Field(default_factory=list, max_length=10_000)
    deactivate: list[str] = Field(default_factory=list, max_length=10_000)
    wait: bool = False


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=anchored(FIELD_RULES["admin_url"][0].pattern))
    world_id: str = Field(default="", pattern=anchored(WORLD_ID, optional=True))
    strategy_id: str = Field(default="", pattern=anchored(STRATEGY_ID, optional=True))


def create_app(service: WorldService, *, faults: FaultSet | None = None) -> FastAPI:
    ws = service.settings
    app = FastAPI(
        default_response_class=SafeJSONResponse,
        title="QMTL WorldService",
        docs_url=None,
        redoc_url=None,
    )
    install_common_routes(app)
    app.add_middleware(BodyLimit, limit=ws.max_request_bytes)
    guard = Depends(AdminGuard(ws.host, ws.admin_token))
    # The ControlBus log takes its own token or the WorldService admin token, either one.
    bus_guard = Depends(AdminGuard(ws.host, (service.config.controlbus.token, ws.admin_token)))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return await service.status()

    @app.post("/worlds", status_code=201, dependencies=[guard])
    def create_world(body: WorldIn) -> SafeJSONResponse:
        created = service.store.create_world(body.world_id)
        return SafeJSONResponse(
            {"world_id": body.world_id, "created": created}, status_code=201 if created else 200
        )

    @app.get("/worlds")
    def worlds() -> dict[str, Any]:
        return {"worlds": service.store.worlds()}

    @app.get("/worlds/{world_id}")
    def world(world_id: str) -> SafeJSONResponse:
        return SafeJSONResponse(service.require_world(world_id).as_dict())

    @app.delete("/worlds/{world_id}", dependencies=[guard])
    def delete_world(world_id: str) -> dict[str, Any]:
        service.delete_world(world_id)
        return {"world_id": world_id, "deleted": True}

    @app.put("/worlds/{world_id}/allocations", dependencies=[guard])
    def put_allocations(world_id: str, body: AllocationsIn) -> SafeJSONResponse:
        service.require_world(world_id)
        pattern = FIELD_RULES["strategy_id"][0]
        bad = {
            k: v
            for k, v in body.allocations.items()
            if not (0.0 <= v <= 1.0) or not pattern.fullmatch(k)
        }
        if bad:
            shown = dict(list(bad.items())[:5])
            raise InvalidRequest(f"weights must be within [0, 1] and strategy ids valid: {shown}")
        service.store.put_allocations(world_id, body.allocations, time.time())
        return SafeJSONResponse({"world_id": world_id, "updated": len(body.allocations)})

    @app.get("/allocations")
    def allocations(world_id: str | None = Query(default=None)) -> SafeJSONResponse:
        if world_id is not None:
            service.require_world(world_id)
        now, after = time.time(), ws.stale_after_seconds
        rows = [a.as_dict(stale=a.stale(now, after)) for a in service.store.allocations(world_id)]
        return SafeJSONResponse({"allocations": rows})

    @app.post("/worlds/{world_id}/apply", dependencies=[guard])
    async def apply(world_id: str, body: ApplyIn) -> SafeJSONResponse:
        plan = ApplyPlan(tuple(body.activate), tuple(body.deactivate))
        run_id = await run_blocking(service.begin_apply, world_id, plan, body.run_id)
        if body.wait:
            run = await run_blocking(service.run_apply, world_id, run_id, plan)
            status = 200 if run.status == "success" else 502
            return SafeJSONResponse(run.as_dict(), status_code=status)
        service.start_apply(world_id, run_id, plan)
        return SafeJSONResponse(
            {"run_id": run_id, "world_id": world_id, "status": "running"}, status_code=202
        )

    @app.get("/worlds/{world_id}/runs/{run_id}")
    def run(world_id: str, run_id: str) -> SafeJSONResponse:
        found = service.store.run(run_id)
        if found is None or found.world_id != world_id:
            raise UnknownRun(f"no apply run {run_id!r} in world {world_id!r}")
        return SafeJSONResponse(found.as_dict())

    # -- promotion guard -------------------------------------------------------------------
    @app.get("/promotion-guard")
    def promotion_guard(
        world_id: str | None = Query(default=None, pattern=anchored(WORLD_ID)),
    ) -> SafeJSONResponse:
        """The guard's last scheduled read (no call out from here), for one world or all."""
        view = service.guard.last()
        if view is None:
            return SafeJSONResponse(
                {"error": "promotion_guard_unavailable", "retryable": True,
                 "message": "the promotion guard has not read its sources yet; retry shortly"},
                status_code=503,
            )  # fmt: skip
        if world_id is not None:
            view = view.for_world(world_id)
        body = view.as_dict()
        unreachable = [u for u in view.unreachable if u["scope"] == "*"]
        if unreachable and not view.hits:
            body["error"] = "promotion_guard_unavailable"
            body["message"] = "cannot read " + ", ".join(
                f"{u['source']} ({u['error']})" for u in unreachable
            )
            return SafeJSONResponse(body, status_code=503)
        return SafeJSONResponse(body)

    @app.get("/promotion-guard/sources")
    def sources() -> dict[str, Any]:
        return {"static": service.guard.static_sources, "sources": [
            {**s.as_dict(), "url": s.url.removesuffix("/admin/cross-context")}
            for s in service.store.sources()
        ]}  # fmt: skip

    @app.post("/promotion-guard/sources", dependencies=[guard])
    def add_source(body: SourceIn) -> dict[str, Any]:
        service.guard.register(body.url, body.world_id, body.strategy_id)
        return {"registered": body.url}

    @app.delete("/promotion-guard/sources", dependencies=[guard])
    def forget_source(url: str = Query(...)) -> dict[str, Any]:
        full = url.rstrip("/") + "/admin/cross-context"
        if not service.store.remove_source(full):
            raise InvalidRequest(f"{url} is not a registered source")
        return {"forgotten": url}

    # -- the ControlBus log this service hosts (embedded backend) ------------------------------
    def hosted() -> Any:
        if service.event_log is None:
            raise NotFound("this WorldService uses the Kafka ControlBus; it hosts no event log")
        return service.event_log

    @app.get("/controlbus/events")
    async def events(
        after: int = Query(default=-1, ge=-1),
        wait: float = Query(default=0.0, ge=0, le=30),
        since: float | None = Query(default=None),
    ) -> SafeJSONResponse:
        log = hosted()
        if since is not None:
            start = log.since(since)
            last, found = log.read(start, limit=10_000)
            return SafeJSONResponse(
                {"head": log.head, "last": max(last, start), "events": [e.as_dict() for e in found]}
            )
        if after < 0:
            return SafeJSONResponse({"head": log.head, "last": log.head, "events": []})
        last, found = await log.poll(after, wait=wait)
        return SafeJSONResponse(
            {"head": log.head, "last": last, "events": [e.as_dict() for e in found]}
        )

    @app.post("/controlbus/events", status_code=202, dependencies=[bus_guard])
    def publish(raw: Any = Body(...)) -> SafeJSONResponse:  # noqa: B008 - FastAPI idiom
        log = hosted()
        try:
            envelope = parse_envelope(raw)
        except QmtlError:
            controlbus_invalid_events_total.labels("invalid_envelope").inc()
            raise
        return SafeJSONResponse({"seq": log.append(envelope)}, status_code=202)

    # -- admin ---------------------------------------------------------------------------------
    @app.post("/admin/stale-ratio/refresh", dependencies=[guard])
    def refresh() -> dict[str, Any]:
        return {"ratios": service.refresh_stale_ratio()}

    if faults is not None:
        install_fault_routes(app, faults, guard)

    return app
