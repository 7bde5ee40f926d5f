"""``qmtl service gateway``: the Gateway HTTP API, wired to its real ports."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from qmtl.foundation import eventloop, httpserver
from qmtl.foundation.breaker import BREAKER_THRESHOLD
from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.contracts import SubmissionRequest
from qmtl.foundation.dependencies import DependencyProbes
from qmtl.foundation.interrupts import interrupt_on_ctrl_c_and_term
from qmtl.foundation.startup import prepare
from qmtl.foundation.tracing import shutdown_tracing
from qmtl.services.controlbus import open_bus
from qmtl.services.dagmanager.client import DagManagerClient, is_remote_failure
from qmtl.services.gateway import metrics
from qmtl.services.gateway.faults import FaultyBus, FaultyClient, FaultyLog, gateway_faults
from qmtl.services.gateway.http import create_app
from qmtl.services.gateway.service import GatewayService
from qmtl.services.gateway.submissions import SubmissionLog

__all__ = ["build_service", "main", "source_registrar"]

log = logging.getLogger("qmtl.gateway")


def source_registrar(
    config: QmtlConfig,
) -> Callable[[SubmissionRequest], Coroutine[Any, Any, None]]:
    """Relay an SDK admin URL to the WorldService's promotion guard (with retries)."""
    ws = config.worldservice
    url = f"{ws.url}/promotion-guard/sources"
    headers = {"Authorization": f"Bearer {ws.admin_token}"} if ws.admin_token else {}

    async def register(request: SubmissionRequest) -> None:
        body = {"url": request.admin_url, "world_id": request.world_id,
                "strategy_id": request.strategy_id}  # fmt: skip
        async with httpx.AsyncClient(timeout=5) as client:
            for attempt in range(5):
                try:
                    response = await client.post(url, json=body, headers=headers)
                except httpx.HTTPError as exc:
                    problem = str(exc)
                else:
                    if response.status_code < 400:
                        return
                    problem = f"{response.status_code} {response.text[:300]}"
                    if response.status_code < 500:  # refused (not allowed, full): final
                        log.warning("promotion guard refused source %s: %s",
                                    request.admin_url, problem)  # fmt: skip
                        return
                if attempt == 4:
                    log.warning("promotion guard source %s not registered at %s: %s",
                                request.admin_url, url, problem)  # fmt: skip
                    return
                await asyncio.sleep(0.5 * 2**attempt)

    return register


def build_service(config: QmtlConfig) -> tuple[GatewayService, Any]:
    """The Gateway with its real ports; fault wrappers only when drills are enabled."""
    from qmtl.foundation.breaker import AsyncCircuitBreaker

    gw = config.gateway
    instance_id = gw.instance_id or f"gateway-{gw.port}"
    breaker = AsyncCircuitBreaker(
        BREAKER_THRESHOLD,
        name="dagclient",
        is_failure=is_remote_failure,
        open_total=metrics.dagclient_breaker_open_total,
        state=metrics.dagclient_breaker_state,
        on_open=lambda: log.error("dagclient breaker opened: DAG Manager unavailable"),
        on_close=lambda: log.info("dagclient breaker closed after a healthy probe"),
    )
    client: Any = DagManagerClient(
        gw.dagmanager_grpc,
        breaker=breaker,
        timeout=gw.dagmanager_timeout_seconds,
        token=config.dagmanager.admin_token,
    )
    submissions: Any = SubmissionLog(gw.submission_log)
    bus: Any = open_bus(
        config.controlbus, role="gateway", instance_id=instance_id,
        replay_seconds=gw.max_freeze_seconds,
    )  # fmt: skip
    faults = None
    if config.drills.enabled:
        faults = gateway_faults()
        client = FaultyClient(client, faults)
        submissions = FaultyLog(submissions, faults)
        bus = FaultyBus(bus, faults)
    probes = DependencyProbes(
        interval=config.telemetry.dependency_probe_seconds,
        deadline=config.telemetry.dependency_deadline_seconds,
    )
    service = GatewayService(
        config, log_port=submissions, client=client, bus=bus, instance_id=instance_id,
        register_source=source_registrar(config), probes=probes,
    )  # fmt: skip
    return service, faults


async def serve(config: QmtlConfig) -> int:
    cfg = config.gateway
    tokens = {"admin_token": cfg.admin_token, "submit_token": cfg.submit_token}
    hint = "strategies send sdk.gateway_token as the submit token"
    if not prepare("gateway", config, cfg.host, tokens, hint):
        return 2
    try:
        service, faults = build_service(config)
    except Exception as exc:
        log.error("cannot start: %s (check gateway.submission_log / controlbus)", exc)
        return 1
    await service.start()
    server = httpserver.server(create_app(service, faults=faults), cfg.host, cfg.port, config.http)
    log.info(
        "gateway %s ready: http://%s:%d -> dagmanager %s",
        service.instance_id, cfg.host, cfg.port, cfg.dagmanager_grpc,
    )  # fmt: skip
    try:
        await server.serve()
    finally:
        await service.stop()
        shutdown_tracing()
    return 0 if server.started else 1


def main(args: argparse.Namespace) -> int:
    interrupt_on_ctrl_c_and_term()
    try:
        return eventloop.run(serve(args.qmtl_config))
    except KeyboardInterrupt:
        return 0
