"""Fuzzing the submission body and the DAG: never a 5xx, never a traceback.

The Gateway app runs in-process with a real DiffEngine (SQLite, in-process queues)
behind an adapter that speaks the DAG Manager client's contract -- the same parsing and
validation a deployment runs, minus the network.  Hypothesis generates JSON bodies of
every shape, hostile strings (NUL, lone surrogates, huge numbers, deep nesting) and
near-valid DAGs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmtl.foundation.config import DagManagerConfig, QmtlConfig
from qmtl.foundation.contracts import DiffResult, SubmissionRequest
from qmtl.foundation.dag import chain_dag, node
from qmtl.services.controlbus import InProcessBus
from qmtl.services.dagmanager.client import BREAKER_THRESHOLD, is_remote_failure
from qmtl.services.dagmanager.queues import InProcessQueues
from qmtl.services.dagmanager.service import wire
from qmtl.services.dagmanager.store import open_graph_store
from qmtl.services.gateway.http import create_app
from qmtl.services.gateway.service import GatewayService
from qmtl.services.gateway.submissions import SubmissionLog


class EngineClient:
    """The DAG Manager client contract over an in-process engine (a worker thread, as gRPC)."""

    def __init__(self, tmp: Path) -> None:
        from qmtl.foundation.breaker import AsyncCircuitBreaker

        store = open_graph_store(f"sqlite:{tmp / 'graph.db'}")
        self.service = wire(DagManagerConfig(), store, InProcessQueues(), drills=False)
        self.breaker = AsyncCircuitBreaker(BREAKER_THRESHOLD, is_failure=is_remote_failure)

    async def diff(self, request: SubmissionRequest) -> DiffResult:
        return await self.breaker.call(asyncio.to_thread, self.service.engine.diff, request)

    async def status(self) -> bool:
        return True

    async def reachable(self) -> bool:
        return True

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = QmtlConfig.model_validate({"gateway": {"max_request_bytes": 256 * 1024}})
    service = GatewayService(
        config, log_port=SubmissionLog(f"sqlite:{tmp / 'log.db'}"), client=EngineClient(tmp),
        bus=InProcessBus(),
    )  # fmt: skip
    return TestClient(create_app(service), raise_server_exceptions=True)


hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "\x00", "\ud800", "a\x1eb", "x" * 300, "../../etc", "__unset__", "None"]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), hostile_text,
)  # fmt: skip
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


def near_valid_dag(draw: Any) -> Any:
    nodes = json.loads(chain_dag(draw(st.integers(1, 4)), salt=draw(st.text(max_size=5))))["nodes"]
    i = draw(st.integers(0, len(nodes) - 1))
    field = draw(
        st.sampled_from(
            ["interval", "period", "tags", "inputs", "node_type", "node_id", "version", "config"]
        )
    )
    nodes[i][field] = draw(json_values)
    return {"nodes": nodes}


near_valid = st.composite(near_valid_dag)()
bodies = st.fixed_dictionaries(
    {"dag": st.one_of(near_valid, json_values, st.just(json.loads(chain_dag(2))))},
    optional={"strategy_id": hostile_text, "world_id": hostile_text, "execution_domain": hostile_text,
              "as_of": hostile_text, "partition": hostile_text, "metadata": json_values,
              "admin_url": hostile_text, "extra": json_values},
)  # fmt: skip


# caplog accumulates over all examples, which is what "no traceback at all" wants.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=st.one_of(bodies, json_values))
def test_no_submission_body_gets_a_5xx(
    client: TestClient, body: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        raw = json.dumps(body).encode("utf-8", "surrogatepass")
        response = client.post(
            "/strategies", content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code < 500, (response.status_code, response.text, body)
    assert "error" in response.json() or response.status_code == 200
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"dag": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"dag": {"nodes": [{"node_type": "P", "interval": ' + b"9" * 5000 + b"}]}}",
        b'{"dag": "{\\"nodes\\": [{\\"node_type\\": \\"P\\\\ud800\\"}]}"}',
        b'{"dag": "\\ud800"}',
        b'{"dag": {"nodes": [{"node_type": "P", "period": 9223372036854775808}]}}',
        json.dumps({"dag": {"nodes": [node("P", interval=2**63)]}}).encode(),
        b"\xff\xfe not utf-8",
    ],
)
def test_edge_cases_of_the_issue_are_4xx(client: TestClient, raw: bytes) -> None:
    response = client.post("/strategies", content=raw, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["error"] in ("invalid_json", "invalid_dag", "invalid_request")
