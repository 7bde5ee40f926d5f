"""Gateway, WorldService and DAG Manager together as subprocesses (embedded defaults)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qmtl import devstack
from qmtl.devstack.stack import LocalStack
from qmtl.foundation.dag import chain_dag
from qmtl.testing.metrics import scrape

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    overrides = {
        "worldservice": {
            "ack_timeout_seconds": 5,
            "stale_after_seconds": 1,
            "stale_interval_seconds": 0.3,
        }
    }
    with LocalStack(tmp_path / "stack", overrides) as running:
        yield running


def submit(stack: LocalStack, salt: str, **extra: object) -> httpx.Response:
    body = {"dag": json.loads(chain_dag(4, salt=salt)), **extra}
    return httpx.post(f"{stack.url('gateway')}/strategies", json=body, timeout=30)


def gw_metrics(stack: LocalStack):  # type: ignore[no-untyped-def]
    return scrape(f"{stack.url('gateway')}/metrics")


def test_submission_latency_duplicates_and_validation(stack: LocalStack) -> None:
    first = submit(stack, "a", world_id="w1")
    assert first.status_code == 200, first.text
    assert len(first.json()["queue_map"]) == 4 and first.json()["sentinel_id"]
    again = submit(stack, "a", world_id="w1")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["queue_map"] == first.json()["queue_map"]
    gw = stack.url("gateway")
    cases = [
        (httpx.post(f"{gw}/strategies", content=b"{nope", timeout=10), 400, "invalid_json"),
        (
            httpx.post(f"{gw}/strategies", json={"dag": {}, "colour": 1}, timeout=10),
            422,
            "invalid_request",
        ),
        (
            httpx.post(
                f"{gw}/strategies",
                json={"dag": {"nodes": [{"node_type": "P", "inputs": ["Nx"]}]}},
                timeout=10,
            ),
            422,
            "invalid_dag",
        ),
        (
            httpx.post(f"{gw}/strategies", content=b"x" * (17 * 1024 * 1024), timeout=30),
            413,
            "payload_too_large",
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"] == code and response.json()["message"]
    status = httpx.get(f"{gw}/status", timeout=10).json()
    assert status["submissions"] == {"completed": 1}, "bad input must change nothing"
    dry = httpx.post(
        f"{gw}/strategies/dry-run", json={"dag": json.loads(chain_dag(3, salt="d"))}, timeout=10
    )
    assert dry.status_code == 200 and dry.json()["nodes"] == 3
    m = gw_metrics(stack)
    assert m.get_value("gateway_e2e_latency_ms_count") == 6
    assert m.get_value("gateway_e2e_latency_p95") > 0
    assert m.get_value("lost_requests_total") == 0
    strategy = first.json()["strategy_id"]
    assert (
        httpx.get(f"{gw}/strategies/{strategy}/status", timeout=10).json()["status"] == "completed"
    )


def test_dagmanager_outage_opens_breaker_and_nothing_is_lost(stack: LocalStack) -> None:
    assert submit(stack, "warm").status_code == 200
    stack.stop_service("dagmanager")
    queued = [submit(stack, f"outage{i}") for i in range(4)]
    assert [r.status_code for r in queued] == [202] * 4
    m = gw_metrics(stack)
    assert (
        m.get_value("dagclient_breaker_open_total") == 1
        and m.get_value("dagclient_breaker_state") == 1
    )
    assert "circuit breaker 'dagclient' is open" in queued[-1].json()["message"]
    stack.start_service("dagmanager")
    gw = stack.url("gateway")

    def all_completed() -> bool:
        return httpx.get(f"{gw}/status", timeout=10).json()["submissions"] == {"completed": 5}

    devstack.wait_for(
        all_completed, timeout=60, what="queued submissions to complete after recovery"
    )
    m = gw_metrics(stack)
    assert m.get_value("dagclient_breaker_state") == 0 and m.get_value("lost_requests_total") == 0
    for response in queued:
        sid = response.json()["strategy_id"]
        assert httpx.get(f"{gw}/strategies/{sid}/status", timeout=10).json()["result"]["queue_map"]


def test_log_write_failure_is_lost_and_retryable(stack: LocalStack) -> None:
    gw = stack.url("gateway")
    assert (
        httpx.post(f"{gw}/admin/faults", json={"log_write_fail": True}, timeout=10).status_code
        == 200
    )
    failed = submit(stack, "lost")
    assert failed.status_code == 503
    assert failed.json() | {"message": "", "submission_id": ""} == {
        "error": "submission_not_persisted",
        "retryable": True,
        "message": "",
        "submission_id": "",
    }
    assert gw_metrics(stack).get_value("lost_requests_total") == 1
    httpx.delete(f"{gw}/admin/faults", timeout=10)
    assert submit(stack, "lost").status_code == 200, "the client's retry goes through"
    assert gw_metrics(stack).get_value("lost_requests_total") == 1


def test_apply_runs_acks_failures_and_stale_allocations(stack: LocalStack) -> None:
    ws = stack.url("worldservice")
    assert httpx.post(f"{ws}/worlds", json={"world_id": "w1"}, timeout=10).status_code == 201
    assert httpx.post(f"{ws}/worlds", json={"world_id": "bad id!"}, timeout=10).status_code == 422
    assert (
        httpx.post(f"{ws}/worlds/nope/apply", json={}, timeout=10).json()["error"]
        == "unknown_world"
    )
    devstack.wait_for(lambda: httpx.get(f"{stack.url('gateway')}/status", timeout=5).json()["controlbus"]["ready"],
                     timeout=30, what="gateway subscribed to the ControlBus")  # fmt: skip
    ok = httpx.post(
        f"{ws}/worlds/w1/apply", json={"run_id": "r1", "activate": ["s1"], "wait": True}, timeout=30
    )
    assert ok.status_code == 200 and ok.json()["status"] == "success"
    assert httpx.get(f"{ws}/worlds/w1", timeout=10).json()["active"] == ["s1"]
    gm = gw_metrics(stack)
    for phase in ("freeze", "unfreeze"):
        assert gm.get_value("controlbus_apply_ack_total", world_id="w1", phase=phase) == 1
        assert gm.get_value("controlbus_apply_ack_latency_ms", world_id="w1", phase=phase) >= 0

    httpx.post(f"{ws}/admin/faults", json={"fail_stage": "switch"}, timeout=10)
    bad = httpx.post(f"{ws}/worlds/w1/apply", json={"run_id": "r2", "wait": True}, timeout=30)
    assert bad.status_code == 502 and bad.json()["stage"] == "switch"
    wm = scrape(f"{ws}/metrics")
    assert (
        wm.get_value("world_apply_failure_total", world_id="w1", run_id="r2", stage="switch") == 1
    )
    assert wm.get_value("world_apply_run_total", world_id="w1", run_id="r2", status="failure") == 1
    assert wm.get_value("world_apply_run_total", world_id="w1", run_id="r1", status="success") == 1
    assert (
        gw_metrics(stack).get_value("controlbus_apply_ack_total", world_id="w1", phase="unfreeze")
        == 2
    ), "a failed switch still unfreezes the Gateways"

    httpx.put(
        f"{ws}/worlds/w1/allocations", json={"allocations": {"s1": 0.6, "s2": 0.4}}, timeout=10
    )
    devstack.wait_for(
        lambda: scrape(f"{ws}/metrics").get_value("world_allocation_snapshot_stale_ratio", world_id="w1") == 1.0,
        timeout=30, what="allocations to go stale (no refresh for > 1 s)",
    )  # fmt: skip
    httpx.put(f"{ws}/worlds/w1/allocations", json={"allocations": {"s1": 0.6}}, timeout=10)
    devstack.wait_for(
        lambda: scrape(f"{ws}/metrics").get_value("world_allocation_snapshot_stale_ratio", world_id="w1") == 0.5,
        timeout=30, what="half of the snapshots refreshed",
    )  # fmt: skip
    rows = httpx.get(f"{ws}/allocations", params={"world_id": "w1"}, timeout=10).json()[
        "allocations"
    ]
    assert {r["strategy_id"] for r in rows} == {"s1", "s2"} and all("updated_at" in r for r in rows)


def test_run_ids_are_pruned_per_world(tmp_path: Path) -> None:
    overrides = {"worldservice": {"runs_kept_per_world": 2}}
    with LocalStack(tmp_path / "prune", overrides) as stack:
        ws = stack.url("worldservice")
        httpx.post(f"{ws}/worlds", json={"world_id": "w"}, timeout=10)
        devstack.wait_for(lambda: httpx.get(f"{stack.url('gateway')}/status", timeout=5).json()["controlbus"]["ready"],
                         timeout=30, what="gateway subscribed")  # fmt: skip
        for i in range(4):
            assert (
                httpx.post(
                    f"{ws}/worlds/w/apply", json={"run_id": f"r{i}", "wait": True}, timeout=30
                ).status_code
                == 200
            )
        series = scrape(f"{ws}/metrics").series("world_apply_run_total")
        assert {dict(k)["run_id"] for k in series} == {"r2", "r3"}


def test_promotion_path_is_isolated_and_applies_by_default(stack: LocalStack) -> None:
    """Backtest, then live, of the same DAG: both succeed, no hit, and the apply goes through."""
    ws = stack.url("worldservice")
    httpx.post(f"{ws}/worlds", json={"world_id": "promo"}, timeout=10)
    back = submit(
        stack, "promo", strategy_id="promo", world_id="promo", execution_domain="backtest"
    )
    live = submit(stack, "promo", strategy_id="promo", world_id="promo", execution_domain="live")
    assert back.status_code == live.status_code == 200, (back.text, live.text)
    assert set(back.json()["queue_map"].values()).isdisjoint(live.json()["queue_map"].values())
    assert (
        scrape(f"{stack.url('dagmanager')}/metrics").series("cross_context_cache_hit_total") == {}
    )
    guard = httpx.get(f"{ws}/promotion-guard", timeout=10).json()
    assert guard["blocked"] is False and guard["unreachable"] == []
    applied = httpx.post(f"{ws}/worlds/promo/apply", json={"wait": True}, timeout=30)
    assert applied.status_code == 200, applied.text
    # GC keeps both deployments' queues: the live one is not an orphan of the backtest one.
    report = httpx.post(f"{stack.url('dagmanager')}/admin/gc-trigger", timeout=10).json()
    assert report["orphans"] == 0, report


def test_promotion_guard_blocks_until_reset_then_holds(tmp_path: Path) -> None:
    """With defaults the guard reads the DAG Manager; after a reset it holds promotions."""
    overrides = {
        "dagmanager": {"namespace_queues": False},
        # Long enough for the two CLI runs inside it on a loaded machine (4 s was not).
        "worldservice": {"promotion_hold_seconds": 12, "guard_poll_seconds": 0.5},
    }
    with LocalStack(tmp_path / "guard", overrides) as stack:
        ws = stack.url("worldservice")
        httpx.post(f"{ws}/worlds", json={"world_id": "live"}, timeout=10)
        assert submit(stack, "g", world_id="live", execution_domain="live").status_code == 200
        clash = submit(stack, "g", world_id="backtest-world")
        assert clash.status_code == 409 and clash.json()["error"] == "cross_context_violation"
        blocked = httpx.post(f"{ws}/worlds/live/apply", json={"wait": True}, timeout=30)
        assert blocked.status_code == 409 and blocked.json()["error"] == "promotion_blocked"
        assert blocked.json()["hits"][0]["labels"]["world_id"] == "backtest-world"
        assert "world_id=backtest-world" in blocked.json()["message"]

        config = ["--config", str(stack.config_path)]
        shown = run_cli(["ops", "cross-context", "show"], config)
        assert shown.returncode == 1 and "world_id=backtest-world" in shown.stdout, shown
        reset = run_cli(["ops", "cross-context", "reset"], config)
        assert "dagmanager: cleared 4 series" in reset.stdout, reset
        held = httpx.post(f"{ws}/worlds/live/apply", json={"wait": True}, timeout=30)
        assert held.status_code == 409 and held.json()["error"] == "promotion_blocked"
        assert "promotions resume at" in held.json()["message"] and held.json()["resume_at"]
        during = run_cli(["ops", "cross-context", "show"], config)
        assert during.returncode == 1 and "promotions on hold for" in during.stdout, during
        devstack.wait_for(
            lambda: httpx.get(f"{ws}/promotion-guard", timeout=5).json()["blocked"] is False,
            timeout=30, what="the promotion hold to end",
        )  # fmt: skip
        allowed = httpx.post(f"{ws}/worlds/live/apply", json={"wait": True}, timeout=30)
        assert allowed.status_code == 200, allowed.text
        after = run_cli(["ops", "cross-context", "show"], config)
        assert after.returncode == 0 and "promotions allowed" in after.stdout, after


def test_unreachable_source_fails_closed_then_expires(tmp_path: Path) -> None:
    """An SDK source that stops answering blocks applies (503) until it is forgotten."""
    overrides = {"worldservice": {"guard_source_expiry_seconds": 3, "guard_poll_seconds": 0.5}}
    with LocalStack(tmp_path / "expire", overrides) as stack:
        ws = stack.url("worldservice")
        httpx.post(f"{ws}/worlds", json={"world_id": "w"}, timeout=10)
        dead = f"http://127.0.0.1:{devstack.free_port()}"
        body = {"dag": json.loads(chain_dag(2, salt="src")), "world_id": "w", "admin_url": dead}
        assert (
            httpx.post(f"{stack.url('gateway')}/strategies", json=body, timeout=30).status_code
            == 200
        )
        devstack.wait_for(
            lambda: httpx.get(f"{ws}/promotion-guard/sources", timeout=5).json()["sources"],
            timeout=30, what="the Gateway to register the SDK source",
        )  # fmt: skip
        refused = httpx.post(f"{ws}/worlds/w/apply", json={"wait": True}, timeout=30)
        assert (
            refused.status_code == 503 and refused.json()["error"] == "promotion_guard_unavailable"
        )
        assert dead in refused.json()["message"]
        devstack.wait_for(
            lambda: httpx.get(f"{ws}/promotion-guard/sources", timeout=5).json()["sources"] == [],
            timeout=30, what="the dead source to be forgotten",
        )  # fmt: skip
        assert (
            httpx.post(f"{ws}/worlds/w/apply", json={"wait": True}, timeout=30).status_code == 200
        )


def run_cli(argv: list[str], config: list[str]) -> subprocess.CompletedProcess[str]:
    """``qmtl <command> --config PATH <rest>`` as an operator types it."""
    return subprocess.run(
        [sys.executable, "-m", "qmtl", argv[0], *config, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_sdk_and_the_gateway_agree_on_the_submission(stack: LocalStack) -> None:
    """The SDK's request, written by the shared codec, is the Gateway's: same submission id,
    and the typed answer carries the diff a second submission repeats as a duplicate."""
    from qmtl.foundation.contracts import SubmissionRequest
    from qmtl.runtime.sdk import ProcessingNode, Runner, Strategy, StreamInput
    from qmtl.runtime.sdk import submit as sdk_submit

    class Agree(Strategy):
        def setup(self) -> None:
            price = StreamInput(tags=["agree"], interval=60, period=3, name="agree_price")
            self.add_nodes(price, ProcessingNode(input=price, compute_fn=len, name="agree_n"))

    first = sdk_submit(Agree, stack.url("gateway"), world_id="w", strategy_id="agree-1")
    expected = SubmissionRequest(
        strategy_id="agree-1", dag_json=Runner.build(Agree).dag_json(), world_id="w"
    )
    assert first.submission_id == expected.submission_id() and first.strategy_id == "agree-1"
    assert len(first.queue_map) == 2 and first.diff.new_queues == 2 and not first.duplicate
    again = sdk_submit(Agree, stack.url("gateway"), world_id="w", strategy_id="agree-1")
    assert again.duplicate and again.diff == first.diff
