"""Client input cannot grow a process's series without bound (issue: cardinality).

Each process gets hundreds of distinct client values -- worlds, contexts, forged
ControlBus worlds -- with a small series budget, and its /metrics stays under a stated
bound; drops are counted in qmtl_dropped_label_values_total.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from qmtl import devstack
from qmtl.devstack.stack import LocalStack
from qmtl.foundation.dag import chain_dag
from qmtl.services.controlbus import FREEZE, Envelope
from qmtl.testing.metrics import scrape

pytestmark = pytest.mark.integration
BUDGET = 20
DISTINCT = 300
#: Every series of every process, all metrics together, stays under this.
BOUND = 450


def lines(url: str) -> int:
    return sum(1 for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
               if line and not line.startswith("#"))  # fmt: skip


def test_thousands_of_client_values_stay_bounded(tmp_path: Path) -> None:
    overrides = {
        "telemetry": {"max_series_per_metric": BUDGET},
        "dagmanager": {"namespace_queues": False},
    }
    with LocalStack(tmp_path / "bounded", overrides) as stack:
        ws, gw, dm = stack.url("worldservice"), stack.url("gateway"), stack.url("dagmanager")
        client = httpx.Client(timeout=30)
        # WorldService: every created world would be a stale-ratio series.
        for i in range(DISTINCT):
            assert client.post(f"{ws}/worlds", json={"world_id": f"w{i}"}).status_code == 201
        client.post(f"{ws}/admin/stale-ratio/refresh").raise_for_status()
        # Gateway: forged freezes for invented worlds would be ACK series.
        for i in range(DISTINCT):
            forged = Envelope(type=FREEZE, source="x", subject=f"f{i}",
                              data={"world_id": f"f{i}", "run_id": "r", "deadline": 9e9})  # fmt: skip
            client.post(f"{ws}/controlbus/events", content=forged.to_json(),
                        headers={"content-type": "application/json"}).raise_for_status()  # fmt: skip
        # DAG Manager: shared queues + distinct as_of values are distinct hit label sets.
        dag = json.loads(chain_dag(2, salt="bounded"))
        assert client.post(f"{gw}/strategies", json={"dag": dag}).status_code == 200
        for i in range(DISTINCT):
            body = {
                "dag": dag,
                "world_id": "other",
                "as_of": f"t{i}",
                "strategy_id": f"s{uuid.uuid4().hex[:6]}",
            }
            assert client.post(f"{gw}/strategies", json=body).status_code == 409
        # A NUL byte or an over-long value never becomes a label: 422.
        for bad in ("a\x00b", "x" * 200):
            body = {"dag": dag, "as_of": bad}
            assert client.post(f"{gw}/strategies", json=body).status_code == 422

        devstack.wait_for(
            lambda: (scrape(f"{gw}/metrics").get_value(
                "qmtl_dropped_label_values_total", metric="world_id") or 0) >= DISTINCT - BUDGET,
            timeout=60, what="the Gateway to ACK every forged freeze",
        )  # fmt: skip
        for name, url in (("worldservice", ws), ("gateway", gw), ("dagmanager", dm)):
            count = lines(url)
            assert count < BOUND, f"{name} exposes {count} series"
        dropped = scrape(f"{dm}/metrics").get_value(
            "qmtl_dropped_label_values_total", metric="cross_context_cache_hit_total"
        )
        assert dropped and dropped >= DISTINCT * 2 - 2 * BUDGET
        assert scrape(f"{ws}/metrics").get_value(
            "qmtl_dropped_label_values_total", metric="world_id"
        )
        # Deleting worlds frees their series.
        for i in range(BUDGET):
            client.delete(f"{ws}/worlds/w{i}").raise_for_status()
        series = scrape(f"{ws}/metrics").series("world_allocation_snapshot_stale_ratio")
        assert not any(dict(k)["world_id"] == "w0" for k in series)


def test_closed_executors_drop_their_node_series() -> None:
    """1,000 short-lived nodes leave no series behind once their executors close."""
    from qmtl.runtime.sdk import Executor, ProcessingNode, StreamInput, metrics

    metrics.reset_metrics()
    before = len(metrics.collect_metrics().splitlines())
    grace = metrics.SERIES_GRACE_SECONDS
    metrics.set_series_grace(0)  # dropped at the first scrape after it has seen them
    try:
        for i in range(1000):
            price = StreamInput(tags=[f"t{i}"], interval=60, period=2)
            node = ProcessingNode(input=price, compute_fn=lambda v: 1, period=2, name=f"n{i}")
            executor = Executor([price, node])
            executor.feed(price, 1.0, {"p": 1})
            executor.close()
        # Closed, but not yet scraped: the last values are still there to be read once.
        seen = len(metrics.collect_metrics().splitlines())
        after = len(metrics.collect_metrics().splitlines())
    finally:
        metrics.set_series_grace(grace)
    assert seen - before > 1000, (before, seen)
    assert after - before < 10, (before, after)
