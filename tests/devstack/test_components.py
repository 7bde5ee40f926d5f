"""The harness starts each real component, it works, and stop() ends exactly its PID."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from qmtl import devstack
from qmtl.foundation import metrics

pytestmark = pytest.mark.integration


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A reaped child no longer exists; a zombie would still answer signal 0.
    return False


def test_kafka_produces_and_consumes(tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = devstack.start_kafka(tmp_path)
    try:
        topic = f"harness-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=10)
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        producer.produce(topic, b"hello")
        assert producer.flush(10) == 0
        consumer = Consumer({
            "bootstrap.servers": broker.bootstrap, "group.id": "harness",
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
        })  # fmt: skip
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            candidate = consumer.poll(0.5)
            if candidate is not None and candidate.error() is None:
                message = candidate
        consumer.close()
        assert message is not None and message.value() == b"hello"
    finally:
        broker.stop()
    assert pid_gone(broker.pid)


def test_postgres_accepts_queries_and_stops() -> None:
    import psycopg

    server = devstack.start_postgres()
    try:
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("select 40 + 2").fetchone() == (42,)
    finally:
        server.stop()
    assert pid_gone(server.pid)
    assert not server.datadir.exists()


def test_postgres_stops_cleanly_with_a_client_still_connected() -> None:
    """A test or stack that leaves a connection open must not hold the server's stop
    (PostgreSQL's SIGTERM waits for every client) until it ends in SIGKILL."""
    import psycopg

    server = devstack.start_postgres()
    conn = psycopg.connect(server.dsn, autocommit=True)
    try:
        assert conn.execute("select 1").fetchone() == (1,)
        assert server.process.stop() == 0, server.process.log_tail()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
    finally:
        conn.close()
        server.stop()
    assert pid_gone(server.pid)


def test_prometheus_scrapes_a_metrics_server(tmp_path: Path) -> None:
    """A real Prometheus scrapes our exporter and answers a PromQL query about it."""
    from prometheus_client import CollectorRegistry

    from qmtl.foundation.catalogue import MetricSpec

    registry = CollectorRegistry()
    gauge = metrics.create(
        MetricSpec("harness_probe_value", "gauge", (), ("any",), "harness test gauge"),
        registry=registry,
    )
    gauge.set(42)
    exporter = metrics.start_metrics_server(port=0, registry=registry)
    config = f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: harness
    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]
"""
    prom = devstack.start_prometheus(tmp_path / "prom", config)
    try:

        def value() -> float | None:
            data = httpx.get(
                f"{prom.url}/api/v1/query", params={"query": "harness_probe_value"}, timeout=5
            ).json()["data"]["result"]
            return float(data[0]["value"][1]) if data else None

        assert devstack.wait_for(value, timeout=30, what="first scrape") == 42.0
    finally:
        prom.stop()
        exporter.stop()
    assert pid_gone(prom.pid)


def test_alertmanager_accepts_and_lists_alerts(tmp_path: Path) -> None:
    config = "route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n"
    am = devstack.start_alertmanager(tmp_path / "am", config)
    try:
        alert = [{"labels": {"alertname": "HarnessProbe", "severity": "info"}}]
        assert httpx.post(f"{am.url}/api/v2/alerts", json=alert, timeout=5).status_code == 200

        def listed() -> bool:
            alerts = httpx.get(f"{am.url}/api/v2/alerts", timeout=5).json()
            return any(a["labels"]["alertname"] == "HarnessProbe" for a in alerts)

        assert devstack.wait_for(listed, timeout=15, what="alert listed")
    finally:
        am.stop()
    assert pid_gone(am.pid)


def test_failed_start_reports_log_tail(tmp_path: Path) -> None:
    """A component that dies during start-up raises with its own log output."""
    with pytest.raises(devstack.ProcessError, match="exited while waiting"):
        devstack.start_prometheus(tmp_path / "bad", "this: [is not a prometheus config\n")


def test_missing_binary_names_the_install() -> None:
    with pytest.raises(devstack.ComponentUnavailable, match="apt-get install nothing-here"):
        devstack.find_binary(
            ["qmtl-no-such-binary"], "install it with: apt-get install nothing-here"
        )


def test_haproxy_balances_and_a_bad_config_is_one_line(tmp_path: Path) -> None:
    """HAProxy in front of a health-checked HTTP server; a config it refuses is named in one
    line before anything starts."""
    from qmtl.devstack.components import Backend, start_haproxy

    server = metrics.start_metrics_server(port=0)
    try:
        balancer = start_haproxy(
            tmp_path / "lb", [Backend("gateway", (("g1", f"127.0.0.1:{server.port}", None),))]
        )
        try:
            # /health is what HAProxy checks; /metrics comes through the frontend.
            devstack.wait_for(
                lambda: httpx.get(f"http://{balancer.frontends['gateway']}/metrics", timeout=5).status_code == 200,
                timeout=30, what="a request through HAProxy",
            )  # fmt: skip
        finally:
            balancer.stop()
        assert pid_gone(balancer.pid)
    finally:
        server.stop()
    with pytest.raises(devstack.ComponentUnavailable) as refused:
        start_haproxy(tmp_path / "bad", [Backend("gateway", (("g1", "not an address", None),))])
    message = str(refused.value)
    assert message.startswith("HAProxy refused") and "\n" not in message, message
    assert not list((tmp_path / "bad").glob("*.pid"))
