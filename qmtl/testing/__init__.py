"""Helpers for testing QMTL and strategies built on it: real components on free ports.

Shipped with the package (not only in ``tests/``) so strategy authors can start a
broker, a database or a Prometheus the same way our own suite does.
"""

from qmtl.testing.components import (
    Alertmanager,
    ComponentUnavailable,
    Kafka,
    Postgres,
    Prometheus,
    Service,
    find_binary,
    start_alertmanager,
    start_kafka,
    start_postgres,
    start_prometheus,
    start_service,
)
from qmtl.testing.processes import (
    ManagedProcess,
    ProcessError,
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
    "find_binary",
    "free_port",
    "http_ok",
    "start_alertmanager",
    "start_kafka",
    "start_postgres",
    "start_prometheus",
    "start_service",
    "tcp_open",
    "wait_for",
]
