"""``qmtl service worldservice``: the WorldService HTTP API, wired to its real ports."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from qmtl.foundation import httpserver
from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.dependencies import DependencyProbes
from qmtl.foundation.interrupts import interrupt_on_ctrl_c_and_term
from qmtl.foundation.startup import prepare
from qmtl.foundation.tracing import shutdown_tracing
from qmtl.services.controlbus import EventLog, open_bus
from qmtl.services.worldservice.faults import FaultyBus, FaultyStore, worldservice_faults
from qmtl.services.worldservice.http import create_app
from qmtl.services.worldservice.service import WorldService
from qmtl.services.worldservice.store import WorldStore

__all__ = ["build_service", "main"]

log = logging.getLogger("qmtl.worldservice")


def build_service(config: QmtlConfig) -> tuple[WorldService, Any]:
    """The WorldService with its real ports; fault wrappers only when drills are enabled."""
    store: Any = WorldStore(config.worldservice.store)
    event_log = EventLog() if config.controlbus.backend == "http" else None
    bus: Any = open_bus(
        config.controlbus, role="worldservice", instance_id="ws", event_log=event_log
    )
    faults = None
    if config.drills.enabled:
        faults = worldservice_faults()
        store = FaultyStore(store, faults)
        bus = FaultyBus(bus, faults)
    probes = DependencyProbes(
        interval=config.telemetry.dependency_probe_seconds,
        deadline=config.telemetry.dependency_deadline_seconds,
    )
    service = WorldService(config, store=store, bus=bus, event_log=event_log, probes=probes)
    return service, faults


def main(args: argparse.Namespace) -> int:
    config: QmtlConfig = args.qmtl_config
    cfg = config.worldservice
    hint = "Gateways also publish ControlBus ACKs with controlbus.token"
    if not prepare("worldservice", config, cfg.host, {"admin_token": cfg.admin_token}, hint):
        return 2
    try:
        service, faults = build_service(config)
    except Exception as exc:
        log.error("cannot start: %s (check worldservice.store / controlbus)", exc)
        return 1
    service.start()
    # Gateways long-poll the hosted ControlBus log: answer them at once on shutdown.
    end_polls = service.event_log.end_polls if service.event_log is not None else None
    server = httpserver.server(
        create_app(service, faults=faults), cfg.host, cfg.port, config.http, on_shutdown=end_polls
    )
    log.info("worldservice ready: http://%s:%d (controlbus %s)", cfg.host, cfg.port,
             config.controlbus.backend)  # fmt: skip
    interrupt_on_ctrl_c_and_term()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
        shutdown_tracing()
    return 0 if server.started else 1
