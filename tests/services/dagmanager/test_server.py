"""The DAG Manager server as a subprocess: real gRPC, real /metrics, real backends."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest

from qmtl import devstack
from qmtl.devstack.drills import lag_behind
from qmtl.foundation.contracts import DiffResult, SubmissionRequest
from qmtl.foundation.dag import chain_dag, node, parse_dag
from qmtl.foundation.errors import BackendUnavailable, CrossContextViolation, InvalidDag
from qmtl.services.dagmanager.client import DagManagerClient
from qmtl.services.dagmanager.proto import dagmanager_pb2 as pb
from qmtl.services.dagmanager.proto import dagmanager_pb2_grpc as pb_grpc
from qmtl.testing.metrics import scrape

pytestmark = pytest.mark.integration


def diff(target: str, dag: str, strategy: str = "s1", **ctx: str) -> DiffResult:
    async def run() -> DiffResult:
        client = DagManagerClient(target, timeout=20)
        try:
            return await client.diff(SubmissionRequest(strategy_id=strategy, dag_json=dag, **ctx))
        finally:
            await client.close()

    return asyncio.run(run())


RPCS = ("Diff", "DiffUnary")


def raw_diff(
    target: str,
    dag: str,
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    rpc: str = "Diff",
    **fields: str,
) -> tuple[grpc.StatusCode, str, str | None]:
    """One diff straight through the generated stub (``rpc``: the stream or the unary
    call): status, details, qmtl-error-code."""
    channel = grpc.insecure_channel(target)
    stub = pb_grpc.DagManagerStub(channel)
    try:
        request = pb.DiffRequest(
            strategy_id=fields.pop("strategy_id", "s1"), dag_json=dag, **fields
        )
        if rpc == "Diff":
            list(stub.Diff(request, timeout=20, metadata=metadata))
        else:
            stub.DiffUnary(request, timeout=20, metadata=metadata)
        return grpc.StatusCode.OK, "", None
    except grpc.RpcError as exc:
        trailers = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
        return exc.code(), exc.details(), trailers.get("qmtl-error-code")  # type: ignore[attr-defined]
    finally:
        channel.close()


def test_embedded_defaults_serve_live_metrics(start_dagmanager) -> None:  # type: ignore[no-untyped-def]
    server, target = start_dagmanager()
    dag = chain_dag(6, salt="embedded")
    cold = diff(target, dag)
    assert cold.new_queues == 6 and cold.crc32 == parse_dag(dag).crc32
    assert diff(target, dag, strategy="s2").new_queues == 0

    code, details, error = raw_diff(target, '{"nodes": [')
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not valid JSON" in details
    assert error == "invalid_dag"
    cycle = json.dumps({"nodes": [
        {"node_id": "Na", "node_type": "P", "inputs": ["Nb"]},
        {"node_id": "Nb", "node_type": "P", "inputs": ["Na"]},
    ]})  # fmt: skip
    assert raw_diff(target, cycle)[0] == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(InvalidDag):
        diff(target, cycle)
    # The promotion path: the same DAG live in another world gets its own queues.
    live = diff(target, dag, world_id="w9", execution_domain="live")
    assert live.new_queues == 6 and set(live.queue_map.values()).isdisjoint(cold.queue_map.values())

    m = scrape(f"{server.url}/metrics")
    assert m.get_value("diff_requests_total") == 6
    assert m.get_value("diff_failures_total") == 3
    assert m.get_value("diff_duration_ms_count") == 6
    assert not math.isnan(m.get_value("diff_duration_ms_p95") or math.nan)
    assert m.series("cross_context_cache_hit_total") == {}
    for name in (
        "queue_create_error_total",
        "kafka_breaker_open_total",
        "graphstore_breaker_open_total",
    ):
        assert m.get_value(name) == 0, name
    assert m.get_value("kafka_breaker_state") == 0 and m.get_value("sentinel_gap_count") == 0
    assert m.get_value("dagmanager_leader") == 1
    assert m.get_value("process_start_time_seconds")

    status = httpx.get(f"{server.url}/status", timeout=5).json()
    assert status["store"]["queues"] == 12 and status["queue_backend"]["kind"] == "inprocess"
    assert status["breakers"]["kafka"]["state"] == "closed" and status["leader"] is True
    report = httpx.post(f"{server.url}/admin/gc-trigger", timeout=10).json()
    assert report["observed"] == 12 and report["orphans"] == 0
    # Drills are off by default: no fault switches anywhere.
    assert (
        httpx.post(f"{server.url}/admin/faults", json={"diff_fail": True}, timeout=5).status_code
        == 404
    )


def test_shared_queues_opt_out_refuses_a_second_context(start_dagmanager) -> None:  # type: ignore[no-untyped-def]
    server, target = start_dagmanager(namespace_queues=False)
    dag = chain_dag(3, salt="optout")
    diff(target, dag)
    code, _details, error = raw_diff(target, dag, world_id="w9", execution_domain="live")
    assert code == grpc.StatusCode.FAILED_PRECONDITION and error == "cross_context_violation"
    with pytest.raises(CrossContextViolation):
        diff(target, dag, world_id="w9", execution_domain="live")
    hit = scrape(f"{server.url}/metrics").get_value(
        "cross_context_cache_hit_total", node_id=parse_dag(dag).order[0], world_id="w9",
        execution_domain="live", as_of="__unset__", partition="__unset__",
    )  # fmt: skip
    assert hit == 2


@pytest.mark.parametrize(
    ("dag", "fields", "needle"),
    [
        ('{"nodes": ' + "[" * 3000 + "]" * 3000 + "}", {}, "nested too deeply"),
        ('{"nodes": [{"node_type": "P", "period": ' + "9" * 5000 + "}]}", {}, "not valid JSON"),
        (json.dumps({"nodes": [node("P", interval=2**63)]}), {}, "interval must be an integer"),
        ('{"nodes": [{"node_type": "P\\ud800"}]}', {}, "lone surrogate"),
        (chain_dag(2), {"as_of": "x" * 100}, "as_of: must be"),
        (chain_dag(2), {"strategy_id": ""}, "strategy_id: must be"),
    ],
)
def test_hostile_input_is_invalid_argument_never_unknown(
    start_dagmanager, dag: str, fields: dict[str, str], needle: str
) -> None:  # type: ignore[no-untyped-def]
    server, target = start_dagmanager()
    for rpc in RPCS:
        code, details, error = raw_diff(target, dag, rpc=rpc, **dict(fields))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (rpc, code, details)
        assert needle in details and error in ("invalid_dag", "invalid_request"), rpc
    assert httpx.get(f"{server.url}/status", timeout=5).json()["store"]["queues"] == 0
    assert "Traceback" not in server.process.log_tail(400)


def _malformed_messages() -> list[bytes]:
    """Bytes that are not a DiffRequest: truncations, bad tags and lengths, invalid UTF-8
    in a string field, wrong wire types."""
    good = pb.DiffRequest(strategy_id="s1", dag_json=chain_dag(2, salt="mal")).SerializeToString()
    broken = [good[:cut] for cut in (1, 3, 7, 20, len(good) - 1)]
    broken += [
        b"\x0a\xff\xff\xff\xff\x0f",  # a length far past the end
        b"\x0a\x02\xff\xfe",  # strategy_id that is not UTF-8
        b"\x12\x03\xc3\x28\x41",  # dag_json that is not UTF-8
        b"\x0b",  # start-group wire type, never closed
        b"\x0f\x01",  # invalid wire type 7
        b"\xff" * 11,  # a varint tag too long
    ]
    return broken


def test_malformed_protobuf_is_invalid_argument_in_one_log_line(start_dagmanager) -> None:  # type: ignore[no-untyped-def]
    """The report: malformed protobufs to Diff/DiffUnary answered UNKNOWN with an ERROR and
    a traceback each, before authentication (2,000 calls: 1.47 MB of log in 1.1 s).  Now
    INVALID_ARGUMENT naming the problem, at most a few log lines, never a traceback; an
    unauthenticated caller gets UNAUTHENTICATED before anything is parsed."""
    server, target = start_dagmanager()
    channel = grpc.insecure_channel(target)
    calls = {
        "DiffUnary": channel.unary_unary("/qmtl.dagmanager.v1.DagManager/DiffUnary"),
        "Diff": channel.unary_stream("/qmtl.dagmanager.v1.DagManager/Diff"),
    }
    try:
        for _ in range(20):
            for message in _malformed_messages():
                for rpc, call in calls.items():
                    with pytest.raises(grpc.RpcError) as caught:
                        answer = call(message, timeout=10)
                        if rpc == "Diff":
                            list(answer)
                    error = caught.value
                    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (rpc, message)  # type: ignore[attr-defined]
                    assert "not a qmtl.dagmanager.v1.DiffRequest" in error.details()  # type: ignore[attr-defined]
                    trailers = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
                    assert trailers.get("qmtl-error-code") == "invalid_request"
    finally:
        channel.close()
    log = server.process.log_tail(5000)
    assert "Traceback" not in log and "Exception deserializing" not in log
    assert log.count("malformed DiffRequest") <= 11, "one line each at a bounded rate"
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def test_an_unauthenticated_malformed_call_is_refused_before_parsing(start_dagmanager) -> None:  # type: ignore[no-untyped-def]
    _server, target = start_dagmanager(admin_token="dm-token")
    channel = grpc.insecure_channel(target)
    try:
        call = channel.unary_unary("/qmtl.dagmanager.v1.DagManager/DiffUnary")
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff" * 11, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\xff" * 11, timeout=10, metadata=(("authorization", "Bearer dm-token"),))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    finally:
        channel.close()


def test_metrics_and_health_answer_while_a_diff_is_stalled(start_dagmanager) -> None:  # type: ignore[no-untyped-def]
    """Diffs run off the event loop: a stalled one never holds up /metrics or /health."""
    server, target = start_dagmanager(drills=True)
    httpx.post(
        f"{server.url}/admin/faults", json={"diff_delay_ms": 4000}, timeout=5
    ).raise_for_status()
    stalled = threading.Thread(target=diff, args=(target, chain_dag(2, salt="stall")))
    stalled.start()
    try:
        devstack.wait_for(
            lambda: httpx.get(f"{server.url}/status", timeout=5).json()["store"]["ok"],
            timeout=10, what="status",
        )  # fmt: skip
        time.sleep(0.3)  # let the diff reach its stall (an ordering aid; asserted below)
        assert httpx.get(f"{server.url}/health", timeout=2).status_code == 200
        assert scrape(f"{server.url}/metrics").get_value("diff_requests_total") == 0
        assert stalled.is_alive(), "the diff must still be stalled while /health answered"
    finally:
        stalled.join(20)
    assert scrape(f"{server.url}/metrics").get_value("diff_requests_total") == 1


def test_metrics_command_serves_the_configured_dagmanager(start_dagmanager, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`qmtl service dagmanager metrics --port N` serves the live series, never zeros."""
    server, target = start_dagmanager()
    diff(target, chain_dag(3, salt="exporter"))
    config = server.process.argv[-1]
    port = devstack.free_port()
    proc = devstack.ManagedProcess(
        "dm-metrics",
        [sys.executable, "-m", "qmtl", "service", "dagmanager", "metrics", "--port", str(port),
         "--config", config],
        log_path=tmp_path / "metrics.log",
    )  # fmt: skip
    try:
        proc.wait_ready(lambda: devstack.http_ok(f"http://127.0.0.1:{port}/metrics"))
        m = scrape(f"http://127.0.0.1:{port}/metrics")
        assert m.get_value("diff_requests_total") == 1
        assert m.get_value("gc_last_run_timestamp") == scrape(f"{server.url}/metrics").get_value(
            "gc_last_run_timestamp"
        )
        server.stop()
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 503
    finally:
        proc.stop()


def test_metrics_command_without_a_dagmanager_exits_1_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "qmtl.yml"
    config.write_text(f"dagmanager: {{http_port: {devstack.free_port()}}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "qmtl", "service", "dagmanager", "metrics", "--config", str(config),
         "--port", str(devstack.free_port())],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no DAG Manager answers at" in lines[0], result.stderr


def test_admin_requires_token_beyond_loopback(start_dagmanager) -> None:  # type: ignore[no-untyped-def]
    server, _ = start_dagmanager(admin_token="s3cret")
    url = f"{server.url}/admin/gc-trigger"
    assert httpx.post(url, timeout=5).status_code == 401
    assert httpx.post(url, headers={"Authorization": "s3cret"}, timeout=5).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 403
    assert (
        httpx.post(url, headers={"Authorization": "Bearer s3cret"}, timeout=10).status_code == 200
    )


def test_exposed_grpc_needs_the_token(start_dagmanager, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Bound to every interface: no token configured refuses to start; with one, calls need it."""
    http_port, grpc_port = devstack.free_port(), devstack.free_port()
    config = tmp_path / "exposed.yml"
    config.write_text(
        f"dagmanager: {{host: '', http_port: {http_port}, grpc_port: {grpc_port}, "
        f"graph_store: 'sqlite:{tmp_path}/g.db'}}\n"
    )
    refused = subprocess.run(
        [sys.executable, "-m", "qmtl", "service", "dagmanager", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "dagmanager.admin_token" in refused.stderr
    server, target = start_dagmanager(host="", admin_token="tok")
    for rpc in RPCS:
        code, _details, error = raw_diff(target, chain_dag(2), rpc=rpc)
        assert code == grpc.StatusCode.UNAUTHENTICATED and error == "auth_required", rpc
        wrong = (("authorization", "Bearer nope"),)
        code, _details, error = raw_diff(target, chain_dag(2), metadata=wrong, rpc=rpc)
        # A wrong token is forbidden, as over HTTP (403): not a request to log in.
        assert code == grpc.StatusCode.PERMISSION_DENIED and error == "auth_invalid", rpc
        token = (("authorization", "Bearer tok"),)
        assert raw_diff(target, chain_dag(2), metadata=token, rpc=rpc)[0] == grpc.StatusCode.OK
    # An empty host is every interface: the admin surface needs the token too.
    assert httpx.post(f"{server.url}/admin/gc-trigger", timeout=5).status_code == 401


def test_ipv6_loopback_bind(tmp_path: Path) -> None:
    http_port, grpc_port = devstack.free_port("::1"), devstack.free_port("::1")
    config = tmp_path / "v6.yml"
    config.write_text(
        f"dagmanager: {{host: '::1', http_port: {http_port}, grpc_port: {grpc_port}, "
        f"graph_store: 'sqlite:{tmp_path}/g.db'}}\n"
    )
    service = devstack.start_service(
        "dagmanager", config, health_url=f"http://[::1]:{http_port}/health", workdir=tmp_path
    )
    try:
        assert diff(f"[::1]:{grpc_port}", chain_dag(2, salt="v6")).new_queues == 2
    finally:
        service.stop()


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
            graph_store=postgres.new_database(), queue_backend="kafka",
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
            code, _details, _error = raw_diff(target, chain_dag(2, salt=f"outage{i}"))
            assert code == grpc.StatusCode.UNAVAILABLE
        m = scrape(f"{server.url}/metrics")
        assert (
            m.get_value("kafka_breaker_open_total") == 1 and m.get_value("kafka_breaker_state") == 1
        )
        with pytest.raises(BackendUnavailable, match="circuit breaker 'kafka' is open"):
            diff(target, chain_dag(2, salt="refused"))
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
