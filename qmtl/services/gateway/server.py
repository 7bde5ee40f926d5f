"""``qmtl service gateway``: the Gateway HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import uvicorn

from qmtl.foundation.common.tracing import setup_tracing, shutdown_tracing
from qmtl.foundation.config import QmtlConfig
from qmtl.services.gateway.http import create_app
from qmtl.services.gateway.service import GatewayService

__all__ = ["main"]

log = logging.getLogger("qmtl.gateway")


async def serve(config: QmtlConfig) -> int:
    cfg = config.gateway
    setup_tracing("gateway", config)
    try:
        service = GatewayService(config)
    except Exception as exc:
        log.error("cannot start: %s (check gateway.submission_log / controlbus)", exc)
        return 1
    await service.start()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service), host=cfg.host, port=cfg.port, log_level="warning", lifespan="off"
        )
    )
    log.info(
        "gateway ready: http://%s:%d -> dagmanager %s", cfg.host, cfg.port, cfg.dagmanager_grpc
    )
    try:
        await server.serve()
    finally:
        await service.stop()
        shutdown_tracing()
    return 0 if server.started else 1


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return asyncio.run(serve(args.qmtl_config))
    except KeyboardInterrupt:
        return 0
