"""The DAG Manager server as a subprocess: real gRPC, real /metrics, real backends."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from pathlib import Path

import grpc
import httpx
import pytest

from qmtl import devstack
from qmtl.devstack.drills import lag_behind
from qmtl.foundation.dag import chain_dag, parse_dag
from qmtl.services.dagmanager.client import DagManagerClient, DiffReply
from qmtl.testing.metrics import scrape

from .conftest import fresh_postgres_db

pytestmark = pytest.mark.integration


def diff(target: str, dag: str, strategy: str = "s1", **ctx: str) -> DiffReply:
    async def run() -> DiffReply:
        client = DagManagerClient(target, timeout=20)
        try:
            return await client.diff(strategy, dag, **ctx)
        finally:
            await client.close()

    return asyncio.run(run())


def diff_error(target: str, dag: str, **ctx: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        diff(target, dag, **ctx)
    return caught.value


def test_embedded_defaults_serve_live_metrics(start_dagmanager) -> None:  # type: ignore[no-untyped-def]
    server, target = start_dagmanager()
    dag = chain_dag(6, salt="embedded")
    cold = diff(target, dag)
    assert cold.new_queues == 6 and cold.crc32 == parse_dag(dag).crc32
    assert diff(target, dag).new_queues == 0

    bad = diff_error(target, '{"nodes": [')
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "not valid JSON" in bad.details()
    cycle = json.dumps({"nodes": [
        {"node_id": "Na", "node_type": "P", "inputs": ["Nb"]},
        {"node_id": "Nb", "node_type": "P", "inputs": ["Na"]},
    ]})  # fmt: skip
    assert diff_error(target, cycle).code() == grpc.StatusCode.INVALID_ARGUMENT
    violation = diff_error(target, dag, world_id="w9", execution_domain="live")
    assert violation.code() == grpc.StatusCode.FAILED_PRECONDITION

    m = scrape(f"{server.url}/metrics")
    assert m.get_value("diff_requests_total") == 5
    assert m.get_value("diff_failures_total") == 3
    assert m.get_value("diff_duration_ms_count") == 5
    assert not math.isnan(m.get_value("diff_duration_ms_p95") or math.nan)
    hit = m.get_value(
        "cross_context_cache_hit_total", node_id=parse_dag(dag).order[0], world_id="w9",
        execution_domain="live", as_of="__unset__", partition="__unset__",
    )  # fmt: skip
    assert hit == 1
    for name in (
        "queue_create_error_total",
        "kafka_breaker_open_total",
        "graphstore_breaker_open_total",
    ):
        assert m.get_value(name) == 0, name
    assert m.get_value("kafka_breaker_state") == 0 and m.get_value("sentinel_gap_count") == 0
    assert m.get_value("process_start_time_seconds")

    status = httpx.get(f"{server.url}/status", timeout=5).json()
    assert status["store"]["queues"] == 6 and status["queue_backend"]["kind"] == "inprocess"
    assert status["breakers"]["kafka"]["state"] == "closed"
    report = httpx.post(f"{server.url}/admin/gc-trigger", timeout=10).json()
    assert report["observed"] == 6 and report["orphans"] == 0
    bad_fault = httpx.post(f"{server.url}/admin/faults", json={"nope": True}, timeout=5)
    assert bad_fault.status_code == 400 and bad_fault.json()["error"] == "unknown_fault"


def test_metrics_command_serves_standalone(tmp_path: Path) -> None:
    """`qmtl service dagmanager metrics --port N` exposes the DAG Manager series."""
    port = devstack.free_port()
    proc = devstack.ManagedProcess(
        "dm-metrics",
        [
            __import__("sys").executable,
            "-m",
            "qmtl",
            "service",
            "dagmanager",
            "metrics",
            "--port",
            str(port),
        ],
        log_path=tmp_path / "metrics.log",
    )
    try:
        proc.wait_ready(lambda: devstack.http_ok(f"http://127.0.0.1:{port}/metrics"))
        m = scrape(f"http://127.0.0.1:{port}/metrics")
        assert m.get_value("diff_requests_total") == 0
        assert m.get_value("orphan_queue_total") == 0
    finally:
        proc.stop()


def test_admin_requires_token_beyond_loopback(start_dagmanager) -> None:  # type: ignore[no-untyped-def]
    server, _ = start_dagmanager(admin_token="s3cret")
    url = f"{server.url}/admin/gc-trigger"
    assert httpx.post(url, timeout=5).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 403
    assert (
        httpx.post(url, headers={"Authorization": "Bearer s3cret"}, timeout=10).status_code == 200
    )


# ------------------------------------------------------------- PostgreSQL + Kafka


def kafka_admin(bootstrap: str):  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def test_postgres_and_kafka_queues_gc_and_lag(start_dagmanager, postgres, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import NewTopic

    broker = devstack.start_kafka(tmp_path / "kafka")
    try:
        group = f"lag-{uuid.uuid4().hex[:6]}"
        server, target = start_dagmanager(
            graph_store=fresh_postgres_db(postgres.dsn), queue_backend="kafka",
            kafka_brokers=broker.bootstrap, orphan_ttl_seconds=0, orphan_grace_seconds=0,
            lag_interval_seconds=0.5, lag_consumer_group=group, lag_threshold_seconds=1.0,
            gc_interval_seconds=3600,
        )  # fmt: skip
        reply = diff(target, chain_dag(3, salt="pg-kafka"))
        admin = kafka_admin(broker.bootstrap)
        topics = set(admin.list_topics(timeout=10).topics)
        assert set(reply.queue_map.values()) <= topics
        status = httpx.get(f"{server.url}/status", timeout=5).json()
        assert status["store"]["backend"].startswith("postgresql://")

        # An orphan created behind our back is first seen, then dropped (TTL 0).
        admin.create_topics([NewTopic("stray-orphan", 1, 1)])["stray-orphan"].result(10)
        report = httpx.post(f"{server.url}/admin/gc-trigger", timeout=30).json()
        assert report["processed"] == ["stray-orphan"]
        assert "stray-orphan" not in admin.list_topics(timeout=10).topics
        m = scrape(f"{server.url}/metrics")
        assert m.get_value("orphan_queue_total") == 0 and m.get_value("gc_last_run_timestamp") > 0

        # A consumer group that read one message and fell behind.
        topic = next(iter(reply.queue_map.values()))
        lag_behind(broker.bootstrap, topic, group)

        def lagging() -> bool:
            sample = scrape(f"{server.url}/metrics")
            lag = sample.get_value("queue_lag_seconds", topic=topic)
            limit = sample.get_value("queue_lag_threshold_seconds", topic=topic)
            return lag is not None and limit == 1.0 and lag > limit

        devstack.wait_for(lagging, timeout=60, what="queue_lag_seconds above its threshold")
        assert scrape(f"{server.url}/metrics").get_value("queue_lag_messages", topic=topic) == 3
    finally:
        broker.stop()


def test_broker_outage_opens_kafka_breaker_and_recovery_resets_it(
    start_dagmanager, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    broker = devstack.start_kafka(tmp_path / "kafka")
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    server, target = start_dagmanager(
        queue_backend="kafka", kafka_brokers=broker.bootstrap, kafka_timeout_seconds=1.0
    )
    try:
        assert diff(target, chain_dag(2, salt="before")).new_queues == 2
        broker.stop()
        for i in range(3):
            error = diff_error(target, chain_dag(2, salt=f"outage{i}"))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
        m = scrape(f"{server.url}/metrics")
        assert (
            m.get_value("kafka_breaker_open_total") == 1 and m.get_value("kafka_breaker_state") == 1
        )
        refused = diff_error(target, chain_dag(2, salt="refused"))
        assert "circuit breaker 'kafka' is open" in refused.details()
        assert (
            httpx.get(f"{server.url}/status", timeout=10).json()["breakers"]["kafka"]["state"]
            == "open"
        )

        broker = devstack.start_kafka(tmp_path / "kafka2", port=port)
        devstack.wait_for(
            lambda: scrape(f"{server.url}/metrics").get_value("kafka_breaker_state") == 0,
            timeout=60, what="kafka breaker reset after a healthy probe",
        )  # fmt: skip
        assert diff(target, chain_dag(2, salt="after")).new_queues == 2
        m = scrape(f"{server.url}/metrics")
        assert m.get_value("kafka_breaker_open_total") == 1
        assert m.get_value("diff_failures_total") == 4
    finally:
        broker.stop()
