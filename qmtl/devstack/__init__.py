"""The local QMTL stack and the real components it runs on, for ``qmtl up`` and tests.

* :mod:`~qmtl.devstack.processes` -- the one process launcher (PIDs, readiness, stop);
* :mod:`~qmtl.devstack.components` -- tansu (Kafka), PostgreSQL, Prometheus,
  Alertmanager, HAProxy, VictoriaMetrics on free loopback ports;
* :mod:`~qmtl.devstack.stack` -- the services wired together (``qmtl up``);
* :mod:`~qmtl.devstack.drills` -- faults that need no switch inside a service.

Product code (services, SDK) never imports this package; only ``qmtl.cli`` does.
"""

from qmtl.devstack.components import (
    Alertmanager,
    ComponentUnavailable,
    Kafka,
    Postgres,
    Prometheus,
    Service,
    VictoriaMetrics,
    find_binary,
    start_alertmanager,
    start_kafka,
    start_postgres,
    start_prometheus,
    start_service,
    start_victoria_metrics,
)
from qmtl.devstack.processes import (
    ManagedProcess,
    ProcessError,
    alive,
    free_port,
    http_ok,
    tcp_open,
    wait_for,
)

__all__ = [
    "Alertmanager",
    "ComponentUnavailable",
    "Kafka",
    "ManagedProcess",
    "Postgres",
    "ProcessError",
    "Prometheus",
    "Service",
    "VictoriaMetrics",
    "alive",
    "find_binary",
    "free_port",
    "http_ok",
    "start_alertmanager",
    "start_kafka",
    "start_postgres",
    "start_prometheus",
    "start_service",
    "start_victoria_metrics",
    "tcp_open",
    "wait_for",
]
