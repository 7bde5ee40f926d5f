"""WorldService in-process, against fakes of its ports: Gateways on an in-process bus,
guard sources answering through a fake HTTP getter, a real SQLite store."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.errors import (
    ApplyInProgress,
    GuardBlocked,
    GuardSourceRefused,
    GuardUnavailable,
    UnknownWorld,
)
from qmtl.services.controlbus import ACK, FREEZE, HEARTBEAT, UNFREEZE, Envelope, InProcessBus
from qmtl.services.worldservice.models import ApplyPlan
from qmtl.services.worldservice.service import WorldService
from qmtl.services.worldservice.store import WorldStore
from qmtl.testing.clock import FakeClock
from qmtl.testing.metrics import value


class FakeGateway:
    """Heartbeats and ACKs like a Gateway; ``mute`` stops its ACKs."""

    def __init__(self, bus: InProcessBus, gateway_id: str) -> None:
        self.bus, self.id, self.mute = bus, gateway_id, False
        self.seen: list[str] = []
        bus.subscribe(self.on_event)

    def beat(self) -> None:
        self.bus.publish(Envelope(type=HEARTBEAT, source="gw", subject=self.id,
                                  data={"gateway_id": self.id}))  # fmt: skip

    def on_event(self, envelope: Envelope) -> None:
        if envelope.type not in (FREEZE, UNFREEZE):
            return
        self.seen.append(envelope.type)
        if self.mute:
            return
        phase = "freeze" if envelope.type == FREEZE else "unfreeze"
        threading.Thread(target=self.bus.publish, args=(Envelope(
            type=ACK, source="gw", subject=envelope.subject,
            data={"world_id": envelope.data["world_id"], "phase": phase,
                  "correlation_id": envelope.id, "gateway_id": self.id},
        ),)).start()  # fmt: skip


class Sources:
    """Fake HTTP GET for the guard: url -> report dict, or an exception to raise."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, url: str, **kwargs: Any) -> httpx.Response:
        self.calls.append((url, kwargs))
        answer = self.answers.get(url, {"hits": [], "last_reset": None})
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(200, json=answer, request=httpx.Request("GET", url))


def make(tmp_path: Path, *, store: WorldStore | None = None, **ws: Any) -> tuple[WorldService, InProcessBus, Sources]:  # fmt: skip
    config = QmtlConfig.model_validate({"worldservice": {"ack_timeout_seconds": 1.0, **ws}})
    bus = InProcessBus()
    sources = Sources()
    store = store or WorldStore(f"sqlite:{tmp_path / 'ws.db'}")
    # The guard's holds and source expiry run on a clock the test moves (service.guard.clock).
    service = WorldService(config, store=store, bus=bus, http_get=sources, clock=FakeClock())
    bus.start()
    return service, bus, sources


DM = "http://127.0.0.1:8010/admin/cross-context"


def test_apply_waits_for_every_live_gateway(tmp_path: Path) -> None:
    service, bus, _ = make(tmp_path)
    service.store.create_world("w")
    gateways = [FakeGateway(bus, "g1"), FakeGateway(bus, "g2")]
    for g in gateways:
        g.beat()
    run_id = service.begin_apply("w", ApplyPlan(activate=("s1",)))
    run = service.run_apply("w", run_id, ApplyPlan(activate=("s1",)))
    assert run.status == "success" and service.store.world("w").active == ("s1",)
    assert all(g.seen == [FREEZE, UNFREEZE] for g in gateways)
    assert value("world_apply_run_total", world_id="w", run_id=run_id, status="success") == 1


def test_a_silent_gateway_fails_the_freeze_by_name(tmp_path: Path) -> None:
    service, bus, _ = make(tmp_path)
    service.store.create_world("w")
    ok, silent = FakeGateway(bus, "g1"), FakeGateway(bus, "g-silent")
    silent.mute = True
    ok.beat()
    silent.beat()
    run_id = service.begin_apply("w", ApplyPlan())
    run = service.run_apply("w", run_id, ApplyPlan())
    assert run.status == "failure" and run.stage == "freeze"
    assert "g-silent" in run.error and "g1" not in run.error
    assert value("world_apply_failure_total", world_id="w", run_id=run_id, stage="freeze") == 1


def test_no_subscribed_gateway_is_named_as_the_problem(tmp_path: Path) -> None:
    service, _bus, _ = make(tmp_path)
    service.store.create_world("w")
    run = service.run_apply("w", service.begin_apply("w", ApplyPlan()), ApplyPlan())
    assert run.status == "failure" and "no Gateway is subscribed" in run.error


def test_guard_blocks_on_hits_fails_closed_and_holds_after_a_reset(tmp_path: Path) -> None:
    service, bus, sources = make(tmp_path, promotion_hold_seconds=0.5)
    service.store.create_world("w")
    FakeGateway(bus, "g1").beat()
    hit = {"labels": {"node_id": "N1", "world_id": "bt"}, "value": 1.0}
    sources.answers[DM] = {"hits": [hit], "last_reset": None}
    with pytest.raises(GuardBlocked, match="node_id=N1") as blocked:
        service.begin_apply("w", ApplyPlan())
    assert blocked.value.details["hits"][0]["source"] == DM
    sources.answers[DM] = httpx.ConnectError("refused")
    with pytest.raises(GuardUnavailable, match="cannot read"):
        service.begin_apply("w", ApplyPlan())
    sources.answers[DM] = {"hits": [], "last_reset": service.guard.clock()}
    with pytest.raises(GuardBlocked, match="promotions resume at") as held:
        service.begin_apply("w", ApplyPlan())
    assert held.value.details["resume_at"] > service.guard.clock()
    service.guard.clock.advance(0.6)
    assert (
        service.run_apply("w", service.begin_apply("w", ApplyPlan()), ApplyPlan()).status
        == "success"
    )


def test_a_hit_cleared_by_a_restart_still_starts_the_hold(tmp_path: Path) -> None:
    """A source that had hits and answers without them (restarted): hold from now."""
    service, _bus, sources = make(tmp_path, promotion_hold_seconds=60)
    service.store.create_world("w")
    sources.answers[DM] = {"hits": [{"labels": {"node_id": "N1"}, "value": 2.0}]}
    service.guard.read()
    sources.answers[DM] = {"hits": [], "last_reset": None}
    with pytest.raises(GuardBlocked, match="must stay at zero for 60s"):
        service.guard.check("w")


def test_registered_sdk_sources_are_read_and_forgotten_when_gone(tmp_path: Path) -> None:
    service, _bus, sources = make(tmp_path, guard_source_expiry_seconds=0.2)
    service.guard.register("http://127.0.0.1:9", "w", "s1")
    sdk = "http://127.0.0.1:9/admin/cross-context"
    sources.answers[sdk] = httpx.ConnectError("refused")
    assert service.guard.read().unreachable
    service.guard.clock.advance(0.3)
    view = service.guard.read()
    assert view.unreachable == [] and service.store.sources() == []


def test_a_registered_source_speaks_for_its_own_world_only(tmp_path: Path) -> None:
    """A submitter's admin URL -- hits, silence or the hold after its reset -- blocks
    applies of the world it submitted to; every other world goes ahead."""
    service, bus, sources = make(tmp_path, promotion_hold_seconds=60)
    for world in ("mine", "other"):
        service.store.create_world(world)
    FakeGateway(bus, "g1").beat()
    service.guard.register("http://127.0.0.1:9", "mine", "s1")
    sdk = "http://127.0.0.1:9/admin/cross-context"
    sources.answers[sdk] = {"hits": [{"labels": {"node_id": "N1"}, "value": 1.0}]}
    with pytest.raises(GuardBlocked, match="node_id=N1"):
        service.begin_apply("mine", ApplyPlan())
    assert (
        service.run_apply("other", service.begin_apply("other", ApplyPlan()), ApplyPlan()).status
        == "success"
    )
    sources.answers[sdk] = httpx.ConnectError("refused")
    with pytest.raises(GuardUnavailable, match=r"127\.0\.0\.1:9"):
        service.begin_apply("mine", ApplyPlan())
    assert (
        service.run_apply("other", service.begin_apply("other", ApplyPlan()), ApplyPlan()).status
        == "success"
    )
    sources.answers[sdk] = {"hits": [], "last_reset": service.guard.clock()}
    with pytest.raises(GuardBlocked, match="promotions resume at"):
        service.begin_apply("mine", ApplyPlan())
    assert (
        service.run_apply("other", service.begin_apply("other", ApplyPlan()), ApplyPlan()).status
        == "success"
    )
    view = service.guard.read().as_dict()
    assert view["blocked"] is False and view["blocked_worlds"] == ["mine"]


def test_guard_reads_carry_no_credential_and_only_reach_allowed_hosts(tmp_path: Path) -> None:
    """No token goes out with a read (not even with every token configured); an admin URL
    beyond loopback is refused unless its network is allowed; the table is bounded."""
    service, _bus, sources = make(
        tmp_path, guard_allowed_sources=["10.1.0.0/16", ".svc.cluster.local"], guard_max_sources=3,
        admin_token="ws", prometheus_url=None,
    )  # fmt: skip
    service.config.sdk.admin_token = "sdk-secret"
    service.config.dagmanager.admin_token = "dm-secret"
    for url in ("http://127.0.0.1:9", "http://10.1.2.3:8001", "http://s.ns.svc.cluster.local:1"):
        service.guard.register(url, "w", "s")
    for url in ("http://10.2.0.1:8001", "http://evil.example:1", "http://svc.cluster.local.evil:1"):
        with pytest.raises(GuardSourceRefused, match="guard_allowed_sources"):
            service.guard.register(url, "w", "s")
    with pytest.raises(GuardSourceRefused, match="guard_max_sources"):
        service.guard.register("http://127.0.0.2:9", "w", "s")
    service.guard.register("http://127.0.0.1:9/", "w2", "s")  # the same process, another world
    assert {(s.url, s.world_id) for s in service.store.sources()} >= {
        ("http://127.0.0.1:9/admin/cross-context", "w"),
        ("http://127.0.0.1:9/admin/cross-context", "w2"),
    }
    service.guard.read()
    assert len(sources.calls) == 4, "one read per URL, the DAG Manager's included"
    for _url, kwargs in sources.calls:
        assert not kwargs.get("headers"), kwargs
        assert kwargs["follow_redirects"] is False


def test_the_last_view_is_served_without_calling_out(tmp_path: Path) -> None:
    """``GET /promotion-guard`` answers from the scheduled read: asking costs no request."""
    service, _bus, sources = make(tmp_path)
    assert service.guard.last() is None
    service.guard.read()
    calls = len(sources.calls)
    for _ in range(5):
        assert service.guard.last() is not None
    assert len(sources.calls) == calls


def test_one_apply_per_world_across_replicas(tmp_path: Path) -> None:
    """Two WorldServices on one store: the second apply for the world gets ApplyInProgress."""
    first, _b1, _ = make(tmp_path)
    second, _b2, _ = make(tmp_path, store=WorldStore(f"sqlite:{tmp_path / 'ws.db'}"))
    first.store.create_world("w")
    first.begin_apply("w", ApplyPlan(), run_id="r1")
    with pytest.raises(ApplyInProgress, match="already in progress for world w"):
        second.begin_apply("w", ApplyPlan(), run_id="r2")
    assert second.store.run("r2") is None


def test_a_run_left_running_by_a_dead_replica_is_failed_and_rolled_back(tmp_path: Path) -> None:
    service, bus, _ = make(tmp_path)
    service.store.create_world("w")
    service.store.start_run("dead1", "w", ApplyPlan(), time.time(), owner="gone/dead1")
    service.store.set_stage("dead1", "switch")
    unfreezes: list[Envelope] = []
    bus.subscribe(lambda e: unfreezes.append(e) if e.type == UNFREEZE else None)
    assert service.recover_runs() == 1
    run = service.store.run("dead1")
    assert run.status == "failure" and run.stage == "switch"
    assert value("world_apply_failure_total", world_id="w", run_id="dead1", stage="switch") == 1
    assert [e.data["world_id"] for e in unfreezes] == ["w"]


def test_deleting_a_world_drops_its_series(tmp_path: Path) -> None:
    service, _bus, _ = make(tmp_path, stale_after_seconds=1)
    service.store.create_world("gone")
    service.refresh_stale_ratio()
    assert value("world_allocation_snapshot_stale_ratio", world_id="gone") == 0
    service.delete_world("gone")
    assert service.store.world("gone") is None
    from qmtl.foundation.metrics import sample_value

    assert sample_value("world_allocation_snapshot_stale_ratio", {"world_id": "gone"}) is None
    with pytest.raises(UnknownWorld):
        service.delete_world("gone")


def test_a_late_lease_heartbeat_does_not_block_the_next_apply(tmp_path: Path) -> None:
    """The heartbeat of a finished run may wake after the run released the world's lease
    (it did on a loaded machine: the next apply got 409 for a whole lease TTL)."""
    import threading

    service, bus, _ = make(tmp_path, apply_lease_seconds=0.3)
    service.store.create_world("w")
    FakeGateway(bus, "g1").beat()
    run_id = service.begin_apply("w", ApplyPlan())
    assert service.run_apply("w", run_id, ApplyPlan()).status == "success"
    owner = f"{service.instance_id}/{run_id}"
    # A heartbeat that missed the run's end: it wakes every 0.1 s with the lease released.
    late = threading.Thread(
        target=service.applies.keep_lease, args=("w", owner, threading.Event()), daemon=True
    )
    late.start()
    late.join(timeout=10)
    assert not late.is_alive(), "the heartbeat must stop once its lease is gone"
    assert service.store.leases.holder(service.applies.lease_name("w")) is None
    second = service.begin_apply("w", ApplyPlan())
    assert service.run_apply("w", second, ApplyPlan()).status == "success"


def test_close_stops_the_loops_and_the_apply_runs_it_started(tmp_path: Path) -> None:
    """Background work is owned by the service: after close() none of its loops runs and no
    apply run can start (they used to be untracked threads that outlived it)."""
    service, bus, _ = make(tmp_path)
    service.store.create_world("w")
    FakeGateway(bus, "g1").beat()
    service.start()
    loops = [t for t in threading.enumerate() if t in service._loops]
    assert sorted(t.name for t in loops) == ["promotion-guard", "run-recovery", "stale-ratio"]
    run_id = service.begin_apply("w", ApplyPlan(activate=("s1",)))
    assert (
        service.start_apply("w", run_id, ApplyPlan(activate=("s1",))).result(30).status == "success"
    )
    service.close()
    assert not any(t.is_alive() for t in loops)
    with pytest.raises(RuntimeError, match="shutdown"):
        service.start_apply("w", "later", ApplyPlan())
