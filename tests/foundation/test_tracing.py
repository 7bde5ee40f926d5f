"""Tracing: real OTLP/HTTP export to a local receiver, console output, W3C propagation.

Each "process" of the trace runs as a real subprocess with its own tracer provider,
as SDK, Gateway and DAG Manager do in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qmtl.foundation.tracing import setup_tracing
from qmtl.testing.receivers import OtlpTraceReceiver

HOP = r"""
import json, sys
from qmtl.foundation import tracing
service, endpoint, carrier, kind = sys.argv[1:5]
tracing.setup_tracing(service, endpoint)
tracer = tracing.get_tracer("qmtl.test")
parent = None
if carrier != "-":
    data = json.loads(carrier)
    if kind == "grpc":
        parent = tracing.context_from_grpc_metadata([(k, v.encode()) for k, v in data])
    else:
        parent = tracing.extract_http_context(data)
with tracer.start_as_current_span(f"{service}-op", context=parent):
    out = tracing.grpc_metadata() if kind == "to-grpc" else dict(tracing.inject_http_headers())
    print(json.dumps(out))
tracing.shutdown_tracing()
"""


def hop(service: str, endpoint: str, carrier: str = "-", kind: str = "http") -> str:
    result = subprocess.run(
        [sys.executable, "-c", HOP, service, endpoint, carrier, kind],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_trace_crosses_three_processes_via_otlp_http() -> None:
    """sdk -> gateway (HTTP headers) -> dagmanager (gRPC metadata) is one trace."""
    with OtlpTraceReceiver() as rx:
        sdk_headers = hop("sdk", rx.endpoint).strip()
        assert "traceparent" in sdk_headers
        gw_headers = json.loads(hop("gateway", rx.endpoint, sdk_headers, "http"))
        hop("dagmanager", rx.endpoint, json.dumps(list(gw_headers.items())), "grpc")
        spans = {s.service: s for s in rx.wait_for_spans(3, timeout=20)}

    assert set(spans) == {"sdk", "gateway", "dagmanager"}
    sdk, gw, dm = spans["sdk"], spans["gateway"], spans["dagmanager"]
    assert sdk.trace_id == gw.trace_id == dm.trace_id
    assert sdk.parent_span_id == ""
    assert gw.parent_span_id == sdk.span_id
    assert dm.parent_span_id == gw.span_id
    assert dm.name == "dagmanager-op"


def test_console_exporter_prints_spans() -> None:
    """`console` prints finished spans with their service name to stdout."""
    out = hop("gateway", "console")
    assert '"name": "gateway-op"' in out
    assert '"service.name": "gateway"' in out


def test_unset_endpoint_installs_nothing() -> None:
    assert setup_tracing("unit", None) is None


STRATEGY_RUN = r"""
from qmtl.runtime.sdk import ProcessingNode, Runner, Strategy, StreamInput

class Plain(Strategy):
    def setup(self):
        price = StreamInput(tags=["t"], interval=60, period=2)
        self.add_nodes(price, ProcessingNode(input=price, compute_fn=lambda v: 1, period=2))

strategy = Runner.build(Plain)
result = Runner.offline(strategy, data={strategy.nodes[0]: [(1.0, 1), (2.0, 2)]})
print(result.executions)
"""


def test_a_strategy_traces_from_qmtl_yml_without_set_up_code(tmp_path: Path) -> None:
    """The documented promise: telemetry.otel_exporter_endpoint in qmtl.yml, and a plain
    strategy run (no setup_tracing call in user code) exports its spans there."""
    with OtlpTraceReceiver() as rx:
        (tmp_path / "qmtl.yml").write_text(
            f"telemetry: {{otel_exporter_endpoint: {rx.endpoint}}}\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", STRATEGY_RUN], cwd=tmp_path, capture_output=True, text=True,
            timeout=60, env={**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "100"},
        )  # fmt: skip
        assert result.returncode == 0 and result.stdout.strip() == "2", result.stderr
        rx.wait_for_spans(1, timeout=20)
        runs = [s for s in rx.spans if s.name == "sdk.run"]
        assert runs and runs[0].service == "sdk"


def test_a_broken_qmtl_yml_is_a_clear_error_for_strategies(tmp_path: Path) -> None:
    (tmp_path / "qmtl.yml").write_text("telemetry: {otel_exporter_endpoint: ftp://nope}\n")
    result = subprocess.run(
        [sys.executable, "-c", STRATEGY_RUN], cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "telemetry.otel_exporter_endpoint" in result.stderr
