"""Highly available monitoring: two Prometheus replicas, a two-peer Alertmanager cluster.

One fault must give exactly one notification at the webhook -- the alert reaches both
peers from both replicas (the replica label is dropped), and the peers' gossiped
notification log keeps the second one quiet -- and the same holds after SIGKILL of one
Prometheus replica and one Alertmanager peer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qmtl import devstack
from qmtl.devstack.stack import LocalStack, Monitoring, start_monitoring
from qmtl.foundation.dag import chain_dag
from qmtl.testing.receivers import AlertWebhook

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

#: LostRequests fires on one lost submission; a short window lets it resolve quickly.
RULES = {"eventWindow": "10s"}
#: Longer than the devstack's Alertmanager peer timeout and two group intervals: a second
#: notification from the other peer would have arrived by then.
OBSERVE_SECONDS = 26


@pytest.fixture(scope="module")
def ha(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalStack, Monitoring, AlertWebhook]]:
    workdir: Path = tmp_path_factory.mktemp("ha")
    webhook = AlertWebhook().start()
    stack = LocalStack(workdir / "stack")
    monitoring = None
    try:
        stack.start()
        monitoring = start_monitoring(
            stack, rule_overrides=RULES, scrape_interval="1s", webhook_url=webhook.url, ha=True
        )
        for prometheus in monitoring.replicas:
            # The counter must be scraped at 0 before the loss, or increase() sees no step.
            devstack.wait_for(
                lambda url=prometheus.url: httpx.get(
                    f"{url}/api/v1/query", params={"query": "lost_requests_total"}, timeout=10
                ).json()["data"]["result"],
                timeout=60, what=f"{prometheus.url} scraping the Gateway",
            )  # fmt: skip
        yield stack, monitoring, webhook
    finally:
        if monitoring is not None:
            monitoring.stop()
        stack.stop()
        webhook.stop()


def _lose_one_submission(stack: LocalStack) -> None:
    gateway = stack.url("gateway")
    httpx.post(
        f"{gateway}/admin/faults", json={"log_write_fail": True}, timeout=10
    ).raise_for_status()
    try:
        body = {"dag": json.loads(chain_dag(2, salt=str(time.time()))), "world_id": "ha"}
        assert httpx.post(f"{gateway}/strategies", json=body, timeout=30).status_code == 503
    finally:
        httpx.delete(f"{gateway}/admin/faults", timeout=10).raise_for_status()


def _notifications(webhook: AlertWebhook, since: float) -> list[tuple[float, str, str]]:
    return [
        (round(e.received_at - since, 1), e.status, e.labels.get("replica", ""))
        for e in webhook.events
        if e.alertname == "LostRequests" and e.received_at >= since
    ]


def _exactly_one_notification(
    stack: LocalStack, monitoring: Monitoring, webhook: AlertWebhook
) -> None:
    started = time.time()
    _lose_one_submission(stack)
    webhook.wait("LostRequests", "firing", since=started, timeout=90)
    # Every live replica evaluates the alert and every live peer holds it ...
    for prometheus in monitoring.live_prometheus():
        alerts = httpx.get(f"{prometheus.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        assert any(a["labels"]["alertname"] == "LostRequests" for a in alerts), prometheus.url
    for alertmanager in monitoring.live_alertmanagers():
        held = httpx.get(f"{alertmanager.url}/api/v2/alerts", timeout=10).json()
        assert "LostRequests" in [a["labels"]["alertname"] for a in held], alertmanager.url
        assert all("replica" not in a["labels"] for a in held), "replica label must be dropped"
    webhook.wait("LostRequests", "resolved", since=started, timeout=90)
    # ... and yet one firing and one resolved notification arrive, without replica label,
    # also after the resolution (a stale pipeline on the second peer would re-fire).
    time.sleep(OBSERVE_SECONDS)  # observation window for a duplicate, not a readiness wait
    seen = _notifications(webhook, started)
    assert [(status, replica) for _t, status, replica in seen] == [
        ("firing", ""),
        ("resolved", ""),
    ], seen


def test_one_fault_gives_one_notification(ha: tuple[LocalStack, Monitoring, AlertWebhook]) -> None:
    stack, monitoring, webhook = ha
    assert len(monitoring.live_prometheus()) == 2 and len(monitoring.live_alertmanagers()) == 2
    # The peers formed one cluster.
    for alertmanager in monitoring.alertmanagers:
        status = httpx.get(f"{alertmanager.url}/api/v2/status", timeout=10).json()
        assert len(status["cluster"]["peers"]) == 2, status["cluster"]
    _exactly_one_notification(stack, monitoring, webhook)


def test_still_one_notification_after_sigkill_of_a_replica_and_a_peer(
    ha: tuple[LocalStack, Monitoring, AlertWebhook],
) -> None:
    stack, monitoring, webhook = ha
    monitoring.replicas[0].process.kill()
    monitoring.alertmanagers[0].process.kill()
    assert len(monitoring.live_prometheus()) == 1 and len(monitoring.live_alertmanagers()) == 1
    _exactly_one_notification(stack, monitoring, webhook)
