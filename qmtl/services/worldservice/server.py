"""``qmtl service worldservice``: the WorldService HTTP API."""

from __future__ import annotations

import argparse
import logging
import signal

import uvicorn

from qmtl.foundation.common.tracing import setup_tracing, shutdown_tracing
from qmtl.services.worldservice.http import create_app
from qmtl.services.worldservice.service import WorldService

__all__ = ["main"]

log = logging.getLogger("qmtl.worldservice")


def main(args: argparse.Namespace) -> int:
    config = args.qmtl_config
    cfg = config.worldservice
    setup_tracing("worldservice", config)
    try:
        service = WorldService(config)
    except Exception as exc:
        log.error("cannot start: %s (check worldservice.store / controlbus)", exc)
        return 1
    service.start()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service), host=cfg.host, port=cfg.port, log_level="warning", lifespan="off"
        )
    )
    log.info(
        "worldservice ready: http://%s:%d (controlbus %s)",
        cfg.host,
        cfg.port,
        config.controlbus.backend,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
        shutdown_tracing()
    return 0 if server.started else 1
