"""One trace across SDK -> Gateway -> DAG Manager; the stack on PostgreSQL + Kafka; admin auth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from qmtl import devstack
from qmtl.devstack.stack import LocalStack
from qmtl.foundation.access import AdminGuard
from qmtl.foundation.dag import chain_dag
from qmtl.foundation.webapp import install_common_routes
from qmtl.testing.metrics import scrape
from qmtl.testing.receivers import OtlpTraceReceiver

SDK_SUBMIT = r"""
import sys
from qmtl.foundation.tracing import setup_tracing, shutdown_tracing
from qmtl.runtime.sdk import ProcessingNode, StreamInput, Strategy
from qmtl.runtime.sdk.gateway import submit

class Traced(Strategy):
    def setup(self):
        price = StreamInput(tags=["trace"], interval=60, period=3)
        self.add_nodes(price, ProcessingNode(input=price, compute_fn=lambda v: 1, period=3))

setup_tracing("sdk", sys.argv[2])
result = submit(Traced(), sys.argv[1], world_id="traced")
print(len(result.queue_map))
shutdown_tracing()
"""


@pytest.mark.integration
def test_one_trace_from_sdk_through_gateway_to_dagmanager(tmp_path: Path) -> None:
    with OtlpTraceReceiver() as rx:
        overrides = {"telemetry": {"otel_exporter_endpoint": rx.endpoint}}
        with LocalStack(
            tmp_path / "traced", overrides, env={"OTEL_BSP_SCHEDULE_DELAY": "200"}
        ) as stack:
            result = subprocess.run(
                [sys.executable, "-c", SDK_SUBMIT, stack.url("gateway"), rx.endpoint],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == "2"

            def complete() -> bool:
                return {"sdk", "gateway", "dagmanager"} <= {s.service for s in rx.spans}

            devstack.wait_for(complete, timeout=30, what="spans of all three services")
        by_service = {
            s.service: s
            for s in rx.spans
            if s.name in ("sdk.submit", "gateway.submit", "dagmanager.Diff")
        }
    sdk, gateway, dagmanager = by_service["sdk"], by_service["gateway"], by_service["dagmanager"]
    assert sdk.trace_id == gateway.trace_id == dagmanager.trace_id
    assert gateway.parent_span_id == sdk.span_id
    assert dagmanager.parent_span_id == gateway.span_id
    assert dagmanager.attributes.get("qmtl.nodes") == 2


@pytest.mark.integration
def test_stack_on_postgresql_and_kafka(tmp_path: Path, postgres: devstack.Postgres) -> None:
    broker = devstack.start_kafka(tmp_path / "kafka")
    try:
        overrides = {"worldservice": {"ack_timeout_seconds": 15}}
        with LocalStack(
            tmp_path / "pgk", overrides, kafka=broker.bootstrap, postgres_dsn=postgres.dsn
        ) as stack:
            body = {"dag": json.loads(chain_dag(3, salt="pgk")), "world_id": "w"}
            response = httpx.post(f"{stack.url('gateway')}/strategies", json=body, timeout=60)
            assert response.status_code == 200, response.text
            gw_status = httpx.get(f"{stack.url('gateway')}/status", timeout=10).json()
            assert gw_status["submission_log"]["backend"].startswith("postgresql://")
            assert gw_status["controlbus"]["backend"] == "kafka"
            devstack.wait_for(
                lambda: httpx.get(f"{stack.url('gateway')}/status", timeout=5).json()["controlbus"]["ready"],
                timeout=60, what="gateway joined the Kafka ControlBus group",
            )  # fmt: skip
            ws = stack.url("worldservice")
            httpx.post(f"{ws}/worlds", json={"world_id": "w"}, timeout=10)
            devstack.wait_for(lambda: httpx.get(f"{ws}/status", timeout=5).json()["controlbus"]["ready"],
                             timeout=60, what="worldservice joined the Kafka ControlBus group")  # fmt: skip
            applied = httpx.post(f"{ws}/worlds/w/apply", json={"wait": True}, timeout=120)
            assert applied.status_code == 200, applied.text
            m = scrape(f"{stack.url('gateway')}/metrics")
            assert m.get_value("controlbus_apply_ack_total", world_id="w", phase="freeze") == 1
            assert m.get_value("controlbus_apply_ack_total", world_id="w", phase="unfreeze") == 1
    finally:
        broker.stop()


def guarded_app(host: str, token: str | None) -> TestClient:
    app = FastAPI()
    install_common_routes(app)

    @app.post("/admin/x", dependencies=[Depends(AdminGuard(host, token))])
    def action() -> dict[str, bool]:
        return {"ok": True}

    return TestClient(app)


@pytest.mark.parametrize(
    ("host", "token", "headers", "status", "code"),
    [
        ("127.0.0.1", None, {}, 200, None),
        ("0.0.0.0", None, {}, 403, "admin_disabled"),
        ("0.0.0.0", "t0k", {}, 401, "admin_auth_required"),
        ("0.0.0.0", "t0k", {"Authorization": "Bearer wrong"}, 403, "admin_auth_invalid"),
        ("0.0.0.0", "t0k", {"Authorization": "Bearer t0k"}, 200, None),
        ("127.0.0.1", "t0k", {}, 401, "admin_auth_required"),
    ],
)
def test_admin_guard(
    host: str, token: str | None, headers: dict[str, str], status: int, code: str | None
) -> None:
    """Beyond loopback, admin endpoints need the configured bearer token, or are off."""
    response = guarded_app(host, token).post("/admin/x", headers=headers)
    assert response.status_code == status
    if code:
        assert response.json()["error"] == code


@pytest.mark.integration
def test_exemplar_of_a_slow_submission_leads_to_its_whole_trace(tmp_path: Path) -> None:
    """Prometheus' exemplar on the slow latency bucket names the trace of that submission."""
    from qmtl.devstack.stack import start_monitoring

    with OtlpTraceReceiver() as rx:
        overrides = {"telemetry": {"otel_exporter_endpoint": rx.endpoint}}
        with LocalStack(
            tmp_path / "exemplars", overrides, env={"OTEL_BSP_SCHEDULE_DELAY": "200"}
        ) as stack:
            monitoring = start_monitoring(stack, scrape_interval="1s")
            try:
                httpx.post(
                    f"{stack.url('gateway')}/admin/faults",
                    json={"submission_delay_ms": 400},
                    timeout=10,
                ).raise_for_status()
                result = subprocess.run(
                    [sys.executable, "-c", SDK_SUBMIT, stack.url("gateway"), rx.endpoint],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert result.returncode == 0, result.stderr
                prometheus = monitoring.prometheus.url

                def exemplars(query: str) -> list[dict[str, str]]:
                    body = httpx.get(
                        f"{prometheus}/api/v1/query_exemplars",
                        params={"query": query, "start": "0", "end": "9999999999"}, timeout=10,
                    ).json()  # fmt: skip
                    return [
                        {**e["labels"], "value": e["value"]}
                        for series in body.get("data") or []
                        for e in series["exemplars"]
                    ]

                # The 400 ms drill lands in the 500 ms bucket, or a higher one on a busy
                # machine: any bucket's exemplar of a submission that slow will do.
                found = devstack.wait_for(
                    lambda: [e for e in exemplars("gateway_e2e_latency_ms_bucket")
                             if float(e["value"]) >= 400],
                    timeout=30, what="an exemplar of the slow submission on the latency buckets",
                )  # fmt: skip
                diff_traces = devstack.wait_for(
                    lambda: {e["trace_id"] for e in exemplars("diff_duration_ms_bucket")},
                    timeout=30, what="an exemplar on the diff duration histogram",
                )  # fmt: skip
            finally:
                monitoring.stop()
        trace_id = found[-1]["trace_id"]
        assert float(found[-1]["value"]) >= 400
        assert len(trace_id) == 32
        assert trace_id in diff_traces  # the DAG Manager's diff of that submission

        def whole_trace() -> set[str]:
            return {s.service for s in rx.spans if s.trace_id == trace_id}

        devstack.wait_for(
            lambda: whole_trace() >= {"sdk", "gateway", "dagmanager"}, timeout=30,
            what=f"spans of trace {trace_id} from sdk, gateway and dagmanager",
        )  # fmt: skip
        names = {s.name for s in rx.spans if s.trace_id == trace_id}
    assert {"sdk.submit", "gateway.submit", "dagmanager.Diff"} <= names


@pytest.mark.integration
def test_a_gateway_that_loses_postgresql_answers_503_retryable(tmp_path: Path) -> None:
    """With its PostgreSQL gone the Gateway neither hangs nor accepts what it cannot keep:
    503 with a retryable error code, within the pool's connect timeouts."""
    own_pg = devstack.start_postgres()  # stopped below; the shared one stays up
    try:
        with LocalStack(tmp_path / "pgdown", postgres_dsn=own_pg.dsn) as stack:
            gateway = stack.url("gateway")
            body = {"dag": json.loads(chain_dag(2, salt="before")), "world_id": "w"}
            assert httpx.post(f"{gateway}/strategies", json=body, timeout=60).status_code == 200
            own_pg.stop()
            body = {"dag": json.loads(chain_dag(2, salt="after")), "world_id": "w"}
            response = httpx.post(f"{gateway}/strategies", json=body, timeout=60)
            assert response.status_code == 503, response.text
            answer = response.json()
            assert answer["error"] == "submission_not_persisted" and answer["retryable"] is True
    finally:
        own_pg.stop()
