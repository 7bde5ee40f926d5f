"""Two replicas of every service on PostgreSQL and Kafka, behind a real HAProxy.

Each proof kills or races replicas for real: SIGKILL of a Gateway during a burst, of the
DAG Manager leader, two applies for one world on two WorldServices, a Gateway restarted
while a freeze waits for its ACK.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from qmtl import devstack
from qmtl.devstack.stack import LocalStack, start_monitoring
from qmtl.foundation.dag import chain_dag
from qmtl.testing.metrics import scrape

pytestmark = pytest.mark.integration
RETRYABLE = {409, 502, 503, 504}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, kafka: devstack.Kafka, postgres: devstack.Postgres
) -> Iterator[LocalStack]:
    overrides = {
        "gateway": {
            "lease_seconds": 6,
            "dagmanager_timeout_seconds": 5,
            "claim_grace_seconds": 1,
            "retry_interval_seconds": 0.3,
        },
        "worldservice": {"ack_timeout_seconds": 20, "gateway_liveness_seconds": 30},
        "dagmanager": {"gc_interval_seconds": 1, "orphan_ttl_seconds": 3600},
    }
    local = LocalStack(
        tmp_path_factory.mktemp("replicas") / "stack", overrides, kafka=kafka.bootstrap,
        postgres_dsn=postgres.dsn, replicas=2,
    ).start()  # fmt: skip
    try:
        httpx.post(f"{local.url('worldservice')}/worlds", json={"world_id": "w"}, timeout=10)
        yield local
    finally:
        local.stop()


def submit_until_final(client: httpx.Client, gateway: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a careful client does: retry the same body on transport errors and retryable
    answers, follow a queued submission by id until it is completed."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            response = client.post(f"{gateway}/strategies", json=body)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            return dict(response.json())
        if response.status_code == 202:
            sid = response.json()["submission_id"]
            while time.monotonic() < deadline:
                try:
                    status = client.get(f"{gateway}/submissions/{sid}").json()
                except (httpx.TransportError, ValueError):
                    status = {}
                if status.get("status") == "completed":
                    return status
                time.sleep(0.2)
        elif response.status_code not in RETRYABLE:
            raise AssertionError(f"{response.status_code}: {response.text}")
        time.sleep(0.2)
    raise AssertionError("submission never completed")


def test_a_burst_survives_sigkill_of_one_gateway(stack: LocalStack) -> None:
    """500 distinct submissions through the balancer; gateway-1 is SIGKILLed in the middle.
    Every accepted submission ends completed exactly once: one row each, none lost."""
    gateway = stack.url("gateway")
    bodies = [
        {"dag": json.loads(chain_dag(2, salt=uuid.uuid4().hex)), "world_id": "w"}
        for _ in range(500)
    ]
    done: list[str] = []
    errors: list[str] = []
    sent = threading.Semaphore(0)

    def worker(chunk: list[dict[str, Any]]) -> None:
        with httpx.Client(timeout=60) as client:
            for body in chunk:
                try:
                    done.append(submit_until_final(client, gateway, body)["submission_id"])
                except AssertionError as exc:
                    errors.append(str(exc))
                sent.release()

    threads = [threading.Thread(target=worker, args=(bodies[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for _ in range(120):
        sent.acquire(timeout=120)
    stack.services["gateway-1"].process.kill()
    for t in threads:
        t.join(300)
    assert errors == []
    assert len(done) == len(set(done)) == 500
    with psycopg.connect(stack.config["gateway"]["submission_log"]) as conn:
        rows = dict(conn.execute(
            "SELECT status, COUNT(*) FROM gateway_submissions GROUP BY status").fetchall())  # fmt: skip
    assert rows.get("completed", 0) >= 500 and set(rows) == {"completed"}, rows
    assert (scrape(stack.url("gateway-2") + "/metrics").get_value("lost_requests_total") or 0) == 0
    stack.services.pop("gateway-1").stop()
    stack.start_service("gateway-1")


def test_two_applies_for_one_world_on_two_worldservices(stack: LocalStack) -> None:
    """One runs, the other gets 409 apply_in_progress (single flight across replicas)."""
    for name in stack.replica_names("gateway"):
        httpx.post(f"{stack.url(name)}/admin/faults", json={"ack_delay_ms": 1500}, timeout=10)
    try:
        results: dict[str, httpx.Response] = {}

        def apply(replica: str) -> None:
            results[replica] = httpx.post(
                f"{stack.url(replica)}/worlds/w/apply", json={"wait": True}, timeout=90
            )

        threads = [
            threading.Thread(target=apply, args=(r,)) for r in stack.replica_names("worldservice")
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        codes = sorted(r.status_code for r in results.values())
        assert codes == [200, 409], {k: v.text for k, v in results.items()}
        refused = next(r for r in results.values() if r.status_code == 409)
        assert refused.json()["error"] == "apply_in_progress"
    finally:
        for name in stack.replica_names("gateway"):
            httpx.delete(f"{stack.url(name)}/admin/faults", timeout=10)


def test_a_gateway_restarted_mid_freeze_still_acks_it(stack: LocalStack) -> None:
    """gateway-2 dies just before a freeze; it comes back within the ACK timeout, resumes
    the ControlBus from its committed offset and ACKs the freeze: the apply succeeds."""
    stack.services["gateway-2"].process.kill()
    stack.services.pop("gateway-2").stop()
    result: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: result.setdefault("run", httpx.post(
        f"{stack.url('worldservice')}/worlds/w/apply", json={"wait": True}, timeout=90)))  # fmt: skip
    worker.start()
    time.sleep(2)  # the freeze is published while gateway-2 is down (ordering aid)
    stack.start_service("gateway-2")
    worker.join(120)
    assert result["run"].status_code == 200, result["run"].text
    # Counters start at zero in the restarted process: this ACK is its own.
    acked = scrape(stack.url("gateway-2") + "/metrics").get_value(
        "controlbus_apply_ack_total", world_id="w", phase="freeze"
    )
    assert acked == 1


def test_the_dagmanager_leader_fails_over(stack: LocalStack, tmp_path: Path) -> None:
    """SIGKILL the leader: the standby takes the lease and runs GC, and GCSchedulerStall
    (rendered with a 10 s limit) stays quiet; exactly one replica reports leading."""
    monitoring = start_monitoring(
        stack, scrape_interval="1s",
        rule_overrides={"gcStallSeconds": "10", "for": {"GCSchedulerStall": "1s"}},
    )  # fmt: skip
    try:

        def leaders() -> list[str]:
            found = []
            for name in stack.replica_names("dagmanager"):
                if name in stack.services:
                    status = httpx.get(f"{stack.url(name)}/status", timeout=5).json()
                    if status["leader"]:
                        found.append(name)
            return found

        assert len(leaders()) == 1
        leader = leaders()[0]
        standby = next(n for n in stack.replica_names("dagmanager") if n != leader)
        runs_before = httpx.get(f"{stack.url(standby)}/status", timeout=5).json()["gc"][
            "completed_runs"
        ]
        stack.services[leader].process.kill()
        stack.services.pop(leader).stop()
        devstack.wait_for(lambda: leaders() == [standby], timeout=20, what="the standby to lead")
        devstack.wait_for(
            lambda: httpx.get(f"{stack.url(standby)}/status", timeout=5).json()["gc"]["completed_runs"] > runs_before,
            timeout=20, what="the new leader to run GC",
        )  # fmt: skip
        assert scrape(stack.url(standby) + "/metrics").get_value("dagmanager_leader") == 1
        time.sleep(15)  # observation window over many rule evaluations
        alerts = httpx.get(f"{monitoring.prometheus.url}/api/v1/alerts", timeout=10).json()["data"][
            "alerts"
        ]
        assert not [a for a in alerts if a["labels"]["alertname"] == "GCSchedulerStall"], alerts
        assert (
            httpx.post(
                f"{stack.url('gateway')}/strategies",
                json={"dag": json.loads(chain_dag(2, salt="after-failover"))},
                timeout=30,
            ).status_code
            == 200
        ), "diffs still flow through HAProxy to the surviving replica"
    finally:
        monitoring.stop()
        stack.start_service(leader)


def test_in_flight_submissions_of_a_killed_gateway_finish_at_once_with_their_answer(
    tmp_path: Path, kafka: devstack.Kafka, postgres: devstack.Postgres
) -> None:
    """The report: SIGKILL of a Gateway replica with diffs in flight (500 ms each then, 2 s
    here; the default 60 s lease); its submissions completed 65-67 s later with ``new_queues: 0``
    and no buffering, where every cold submission has 3 and 3.  Now the surviving replica
    takes them over as soon as the dead one's liveness lapses, well inside the lease, and
    each answer is the one its first run made."""
    with LocalStack(
        tmp_path / "kill", {}, kafka=kafka.bootstrap, postgres_dsn=postgres.dsn, replicas=2
    ) as stack:
        for name in stack.replica_names("dagmanager"):
            # Long enough that all six are in flight together even on a loaded machine.
            httpx.post(f"{stack.url(name)}/admin/faults", json={"diff_delay_ms": 2000},
                       timeout=10).raise_for_status()  # fmt: skip
        bodies = [
            {"strategy_id": f"kill-{i}", "dag": json.loads(chain_dag(3, salt=uuid.uuid4().hex)),
             "world_id": "w"}
            for i in range(6)
        ]  # fmt: skip
        doomed = stack.url("gateway-1")

        def send(body: dict[str, Any]) -> None:
            with contextlib.suppress(httpx.TransportError):  # the replica dies with it
                httpx.post(f"{doomed}/strategies", json=body, timeout=30)

        senders = [threading.Thread(target=send, args=(b,)) for b in bodies]
        for t in senders:
            t.start()
        dsn = stack.config["gateway"]["submission_log"]

        def in_flight() -> int:
            with psycopg.connect(dsn) as conn:
                return int(conn.execute(
                    "SELECT COUNT(*) FROM gateway_submissions WHERE status = 'pending' "
                    "AND lease_owner = 'gateway-1'").fetchone()[0])  # fmt: skip

        devstack.wait_for(lambda: in_flight() == 6, timeout=30, what="six diffs in flight")
        stack.services["gateway-1"].process.kill()
        killed = time.monotonic()
        for t in senders:
            t.join(60)
        lease = 60.0  # gateway.lease_seconds, the default
        with httpx.Client(timeout=60) as client:
            for body in bodies:
                final = submit_until_final(client, stack.url("gateway-2"), body)
                took = time.monotonic() - killed
                answer = final.get("result") or final
                assert answer["new_queues"] == 3 and len(answer["buffering"]) == 3, final
                assert took < lease, f"completed {took:.1f} s after the kill: the lease ran out"
        print(f"the killed replica's submissions completed {took:.1f} s after SIGKILL")
        stack.services.pop("gateway-1").stop()


def test_an_abandoned_submission_goes_through_after_the_fault_is_cleared(tmp_path: Path) -> None:
    """The report: with queue creation failing, submissions answered 202 were abandoned
    after 20 attempts; once the fault was gone the same body answered 503 "abandoned"
    every time.  Now the same body starts the submission again and it completes."""
    overrides = {"gateway": {"max_attempts": 3, "retry_interval_seconds": 0.2}}
    with LocalStack(tmp_path / "abandon", overrides) as stack:
        gw, dm = stack.url("gateway"), stack.url("dagmanager")
        httpx.post(f"{dm}/admin/faults", json={"queue_create_fail": True}, timeout=10)
        body = {"dag": json.loads(chain_dag(2, salt=uuid.uuid4().hex)), "world_id": "w"}
        first = httpx.post(f"{gw}/strategies", json=body, timeout=30)
        assert first.status_code == 202, first.text
        sid = first.json()["submission_id"]
        devstack.wait_for(
            lambda: httpx.get(f"{gw}/submissions/{sid}", timeout=5).json()["status"] == "abandoned",
            timeout=60, what="the submission to be abandoned",
        )  # fmt: skip
        httpx.delete(f"{dm}/admin/faults", timeout=10)
        again = httpx.post(f"{gw}/strategies", json=body, timeout=30)
        assert again.status_code == 200, again.text
        assert again.json()["submission_id"] == sid and again.json()["new_queues"] == 2
        assert httpx.get(f"{gw}/submissions/{sid}", timeout=5).json()["status"] == "completed"
