"""``qmtl service dagmanager server``: gRPC Diff + HTTP admin in one asyncio process."""

from __future__ import annotations

import argparse
import logging

import grpc

from qmtl.foundation import eventloop, httpserver
from qmtl.foundation.access import is_exposed
from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.interrupts import interrupt_on_ctrl_c_and_term
from qmtl.foundation.memory import return_large_blocks_to_os
from qmtl.foundation.startup import prepare
from qmtl.foundation.tracing import shutdown_tracing
from qmtl.services.dagmanager.grpc_service import DagManagerServicer, register
from qmtl.services.dagmanager.http import create_app
from qmtl.services.dagmanager.service import build_service, tune_gc

__all__ = ["grpc_address", "main", "serve"]

log = logging.getLogger("qmtl.dagmanager")


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC wants it: IPv6 in brackets, an empty host as every interface."""
    if not host:
        host = "[::]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


async def serve(config: QmtlConfig) -> int:
    cfg = config.dagmanager
    hint = "Gateways send the token as gRPC metadata"
    if not prepare("dagmanager", config, cfg.host, {"admin_token": cfg.admin_token}, hint):
        return 2
    exposed = is_exposed(cfg.host)
    tune_gc()
    return_large_blocks_to_os()
    try:
        service = build_service(config)
    except Exception as exc:
        log.error("cannot start: %s (check dagmanager.graph_store / queue backend)", exc)
        return 1
    grpc_server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", cfg.max_dag_bytes + 65536)]
    )
    register(DagManagerServicer(service, token=cfg.admin_token, exposed=exposed), grpc_server)
    address = grpc_address(cfg.host, cfg.grpc_port)
    try:
        bound = grpc_server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        log.error("cannot bind gRPC on %s (port in use?); set dagmanager.grpc_port", address)
        return 1
    http = httpserver.server(create_app(service), cfg.host, cfg.http_port, config.http)
    await grpc_server.start()
    service.start()
    log.info(
        "dagmanager ready: grpc=%s http=%s:%d leader=%s", address, cfg.host, cfg.http_port,
        service.leader,
    )  # fmt: skip
    try:
        await http.serve()
    finally:
        await grpc_server.stop(grace=2)
        await service.stop()
        shutdown_tracing()
    return 0 if http.started else 1


def main(args: argparse.Namespace) -> int:
    interrupt_on_ctrl_c_and_term()
    try:
        return eventloop.run(serve(args.qmtl_config))
    except KeyboardInterrupt:
        return 0
