"""``qmtl service dagmanager server``: gRPC Diff + HTTP admin in one asyncio process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import grpc
import uvicorn

from qmtl.foundation.common.tracing import setup_tracing, shutdown_tracing
from qmtl.foundation.config import QmtlConfig
from qmtl.services.dagmanager.grpc_service import DagManagerServicer
from qmtl.services.dagmanager.http import create_app
from qmtl.services.dagmanager.proto import dagmanager_pb2_grpc as pb_grpc
from qmtl.services.dagmanager.service import DagManagerService, tune_gc

__all__ = ["main", "serve"]

log = logging.getLogger("qmtl.dagmanager")


async def serve(config: QmtlConfig) -> int:
    cfg = config.dagmanager
    setup_tracing("dagmanager", config)
    tune_gc()
    try:
        service = DagManagerService(cfg)
    except Exception as exc:
        log.error("cannot start: %s (check dagmanager.graph_store / queue backend)", exc)
        return 1
    grpc_server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", cfg.max_dag_bytes + 65536)]
    )
    pb_grpc.add_DagManagerServicer_to_server(DagManagerServicer(service), grpc_server)
    try:
        bound = grpc_server.add_insecure_port(f"{cfg.host}:{cfg.grpc_port}")
    except RuntimeError:
        bound = 0
    if not bound:
        log.error(
            "cannot bind gRPC on %s:%s (port in use?); set dagmanager.grpc_port",
            cfg.host,
            cfg.grpc_port,
        )
        return 1
    http = uvicorn.Server(
        uvicorn.Config(
            create_app(service),
            host=cfg.host,
            port=cfg.http_port,
            log_level="warning",
            lifespan="off",
        )
    )
    await grpc_server.start()
    service.start()
    log.info(
        "dagmanager ready: grpc=%s:%d http=http://%s:%d",
        cfg.host,
        cfg.grpc_port,
        cfg.host,
        cfg.http_port,
    )
    try:
        await http.serve()
    finally:
        await grpc_server.stop(grace=2)
        await service.stop()
        shutdown_tracing()
    return 0 if http.started else 1


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return asyncio.run(serve(args.qmtl_config))
    except KeyboardInterrupt:
        return 0
