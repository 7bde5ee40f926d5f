"""Processes that call HTTP repeatedly keep one client (and one connection) alive.

A fresh httpx client per request builds an SSL context each time: in an alert-drill stack
the WorldService's promotion-guard poll alone used ~15 % of a core that way.  Each test
counts the TCP connections a scripted server accepts: one for many requests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qmtl.foundation.config import QmtlConfig
from qmtl.runtime.sdk import ProcessingNode, Strategy, StreamInput
from qmtl.runtime.sdk.gateway import submit
from qmtl.services.controlbus import Envelope, HttpBus, InProcessBus
from qmtl.services.worldservice.service import WorldService
from qmtl.services.worldservice.store import WorldStore
from qmtl.testing.receivers import ScriptedHttp


def test_promotion_guard_polls_reuse_one_connection(tmp_path: Path) -> None:
    with ScriptedHttp({"/admin/cross-context": [(200, {"hits": [], "last_reset": None})]}) as dm:
        config = QmtlConfig.model_validate({"dagmanager": {"http_port": dm.port}})
        service = WorldService(
            config, store=WorldStore(f"sqlite:{tmp_path / 'ws.db'}"), bus=InProcessBus()
        )
        try:
            for _ in range(5):
                assert service.guard.read().hits == []
        finally:
            service.close()
        assert len(dm.requests) == 5
        assert dm.connections == 1


def test_controlbus_http_publishes_reuse_one_connection() -> None:
    with ScriptedHttp({"/controlbus/events": [(200, {"accepted": True})]}) as log:
        bus = HttpBus(log.url)
        try:
            for i in range(5):
                bus.publish(Envelope(type="qmtl.heartbeat", source="t", subject="g", data={"i": i}))
        finally:
            bus.close()
        assert [m for m, _ in log.requests] == ["POST"] * 5
        assert log.connections == 1
        # An ACK racing shutdown gets the error publishers handle, not a closed-client crash.
        with pytest.raises(ConnectionError, match="closed"):
            bus.publish(Envelope(type="qmtl.heartbeat", source="t", subject="g", data={}))


class Tiny(Strategy):
    def setup(self) -> None:
        self.src = StreamInput(tags=["t"], interval=60, period=1, name="tiny_price")
        self.out = ProcessingNode(input=self.src, compute_fn=lambda v: 1, name="tiny_out")
        self.add_nodes(self.src, self.out)


def test_sdk_submit_and_status_polls_share_one_connection() -> None:
    completed = {"status": "completed", "result": {"queue_map": {}}}
    answers = {
        "/strategies": [(202, {"submission_id": "s1"})],
        "/submissions/s1": [(200, {"status": "queued"}), (200, {"status": "queued"}), (200, completed)],
    }  # fmt: skip
    with ScriptedHttp(answers) as gateway:
        result = submit(Tiny, gateway.url, world_id="w", wait_seconds=30)
        assert result.submission_id == "s1" and dict(result.queue_map) == {}
        assert [m for m, _ in gateway.requests] == ["POST", "GET", "GET", "GET"]
        assert gateway.connections == 1
