"""The WorldService's stored values come back typed, and answer in the documented shape."""

from __future__ import annotations

from pathlib import Path

from qmtl.services.worldservice.models import ApplyPlan, GuardSource, World
from qmtl.services.worldservice.store import WorldStore


def test_a_plan_adds_activations_then_removes_deactivations() -> None:
    plan = ApplyPlan(activate=("b", "c"), deactivate=("a", "c"))
    assert plan.applied_to(["a", "d"]) == ["b", "d"]
    assert ApplyPlan.from_dict(plan.as_dict()) == plan
    assert ApplyPlan.from_dict({}) == ApplyPlan()


def test_values_survive_the_store_with_their_types(tmp_path: Path) -> None:
    store = WorldStore(f"sqlite:{tmp_path / 'w.db'}")
    store.create_world("w1")
    store.set_active("w1", ["s2", "s1"])
    world = store.world("w1")
    assert isinstance(world, World) and world.active == ("s1", "s2")

    store.put_allocations("w1", {"s1": 0.25}, now=100.0)
    (allocation,) = store.allocations("w1")
    assert allocation.weight == 0.25 and allocation.stale(now=161.0, after_seconds=60)
    assert not allocation.stale(now=159.0, after_seconds=60)

    store.start_run("r1", "w1", ApplyPlan(activate=("s1",)), now=5.0, owner="ws-a/r1")
    store.set_stage("r1", "switch")
    (running,) = store.running_runs()
    assert running.owner == "ws-a/r1" and running.stage == "switch"
    store.finish_run("r1", "failure", "switch", "no ACK")
    run = store.run("r1")
    assert run is not None and run.plan == ApplyPlan(activate=("s1",))
    assert run.as_dict() == {
        "run_id": "r1", "world_id": "w1", "status": "failure", "stage": "switch",
        "error": "no ACK", "plan": {"activate": ["s1"], "deactivate": []}, "started_at": 5.0,
        "finished_at": run.finished_at,
    }  # fmt: skip
    assert store.running_runs() == [] and store.run("nope") is None

    store.add_source("http://127.0.0.1:9/admin/cross-context", "w1", "s1", now=7.0)
    store.source_seen("http://127.0.0.1:9/admin/cross-context", now=8.0, had_hits=True)
    (source,) = store.sources()
    assert source == GuardSource(
        "http://127.0.0.1:9/admin/cross-context", "w1", "s1", 7.0, 8.0, True
    )
    store.close()
