"""Diff engine, GC and breakers against real graph stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import time

import pytest

from qmtl.foundation.dag import chain_dag, parse_dag
from qmtl.services.dagmanager.diff import (
    BackendUnavailable,
    CrossContextViolation,
    DiffRequestData,
    InvalidDag,
    QueueCreationFailed,
)
from qmtl.services.dagmanager.store import GraphStore
from qmtl.testing.metrics import Snapshot, value

from .conftest import make_service

COUNTERS = (
    "diff_requests_total", "diff_failures_total", "queue_create_error_total",
    "kafka_breaker_open_total", "graphstore_breaker_open_total",
)  # fmt: skip


def req(dag: str, strategy: str = "s1", **ctx: str) -> DiffRequestData:
    return DiffRequestData(strategy_id=strategy, dag_json=dag, **ctx)


def test_cold_then_warm_diff_reuses_queues(store: GraphStore) -> None:
    service, queues = make_service(store)
    snap = Snapshot(*COUNTERS)
    dag = chain_dag(20, salt="cold-warm")
    cold = service.engine.diff(req(dag))
    warm = service.engine.diff(req(dag))
    assert cold.new_queues == 20 and warm.new_queues == 0
    assert cold.queue_map == warm.queue_map and len(set(cold.queue_map.values())) == 20
    assert cold.crc32 == warm.crc32 == parse_dag(dag).crc32
    assert cold.sentinel_id == f"s1:{cold.version}:sentinel"
    assert len(cold.buffering) == 20 and cold.buffering[0][1:] == (10, 60)
    assert warm.buffering == []
    assert set(cold.queue_map.values()) <= queues.list()
    assert snap.delta("diff_requests_total") == 2 and snap.delta("diff_failures_total") == 0
    assert value("diff_duration_ms_count") >= 2
    assert not math.isnan(value("diff_duration_ms_p95"))


def test_invalid_dag_counts_as_failure_and_changes_nothing(store: GraphStore) -> None:
    service, _ = make_service(store, max_dag_bytes=10_000)
    before = store.counts()
    snap = Snapshot(*COUNTERS)
    for bad in ("{oops", chain_dag(200)):
        with pytest.raises(InvalidDag):
            service.engine.diff(req(bad))
    assert snap.delta("diff_requests_total") == 2 and snap.delta("diff_failures_total") == 2
    assert store.counts() == before


def test_cross_context_violation_fails_and_counts(store: GraphStore) -> None:
    """Same nodes from another world/domain may not reuse the live queues."""
    service, _ = make_service(store)
    dag = chain_dag(3, salt="xctx")
    service.engine.diff(req(dag, world_id="w1", execution_domain="live"))
    before = store.counts()
    node = parse_dag(dag).order[0]
    labels = {
        "node_id": node,
        "world_id": "w2",
        "execution_domain": "__unset__",
        "as_of": "__unset__",
        "partition": "__unset__",
    }
    hits = value("cross_context_cache_hit_total", **labels)
    with pytest.raises(CrossContextViolation, match="another compute context"):
        service.engine.diff(req(dag, strategy="s2", world_id="w2"))
    assert value("cross_context_cache_hit_total", **labels) == hits + 1
    assert store.counts() == before
    assert service.cross_context_hits()
    assert service.reset_cross_context() >= 3
    assert value("cross_context_cache_hit_total", **labels) == 0


def test_namespaced_queues_isolate_worlds(store: GraphStore) -> None:
    service, _ = make_service(store, namespace_queues=True)
    dag = chain_dag(3, salt="ns")
    live = service.engine.diff(req(dag, world_id="w1", execution_domain="live"))
    back = service.engine.diff(req(dag, strategy="s2", world_id="w2"))
    assert set(live.queue_map.values()).isdisjoint(back.queue_map.values())
    assert all(q.startswith("w1.live.") for q in live.queue_map.values())
    assert all(q.startswith("w2.backtest.") for q in back.queue_map.values())


def test_queue_creation_failure_counts_and_stores_nothing(store: GraphStore) -> None:
    service, queues = make_service(store)
    service.set_faults({"queue_create_fail": True})
    before = store.counts()
    snap = Snapshot(*COUNTERS)
    with pytest.raises(QueueCreationFailed, match="4 of 4 queue"):
        service.engine.diff(req(chain_dag(4, salt="qfail")))
    assert snap.delta("queue_create_error_total") == 4
    assert snap.delta("diff_failures_total") == 1
    assert store.counts() == before and queues.list() == set()


def test_queue_backend_down_opens_kafka_breaker_and_probe_resets(store: GraphStore) -> None:
    service, _queues = make_service(store)
    snap = Snapshot(*COUNTERS)
    service.set_faults({"queue_backend_down": True})
    for i in range(3):
        with pytest.raises(BackendUnavailable, match=r"unreachable|down"):
            service.engine.diff(req(chain_dag(2, salt=f"down{i}")))
    assert service.kafka_breaker.is_open
    assert snap.delta("kafka_breaker_open_total") == 1 and value("kafka_breaker_state") == 1
    with pytest.raises(BackendUnavailable, match="circuit breaker 'kafka' is open"):
        service.engine.diff(req(chain_dag(2, salt="refused")))
    service.probe_breakers()
    assert service.kafka_breaker.is_open, "probe must fail while the backend is down"
    service.clear_faults()
    service.probe_breakers()
    assert not service.kafka_breaker.is_open and value("kafka_breaker_state") == 0
    assert service.engine.diff(req(chain_dag(2, salt="back"))).new_queues == 2


def test_sentinel_gap_is_visible_then_closes(store: GraphStore) -> None:
    service, _ = make_service(store)
    dag = chain_dag(2, salt="sentinel")
    service.set_faults({"sentinel_skip": True})
    result = service.engine.diff(req(dag, strategy="gap"))
    assert result.warnings and "sentinel not recorded" in result.warnings[0]
    service.refresh_sentinel_gaps()
    assert ("gap", result.version) in service.sentinel_gaps
    assert value("sentinel_gap_count") == len(service.sentinel_gaps) >= 1
    service.clear_faults()
    service.engine.diff(req(dag, strategy="gap"))
    service.refresh_sentinel_gaps()
    assert ("gap", result.version) not in service.sentinel_gaps


def test_gc_drops_aged_orphans_and_keeps_young_ones(store: GraphStore) -> None:
    service, queues = make_service(store, orphan_ttl_seconds=3600, orphan_grace_seconds=0)
    keep = service.engine.diff(req(chain_dag(2, salt="keep"), strategy="keep"))
    gone = service.engine.diff(req(chain_dag(3, salt="gone"), strategy="gone"))
    queues.create(["__consumer_offsets", "external-topic"])
    assert service.store.retire_strategy("gone")

    young = service.gc.sweep()
    assert young.orphans == 4 and young.processed == []
    assert {s["queue"] for s in young.skipped} == {*gone.queue_map.values(), "external-topic"}
    assert all("within TTL + grace" in s["reason"] for s in young.skipped)
    assert value("orphan_queue_total") == 4
    assert time.time() - value("gc_last_run_timestamp") < 60

    service.config.orphan_ttl_seconds = 0
    swept = service.gc.sweep()
    assert sorted(swept.processed) == sorted([*gone.queue_map.values(), "external-topic"])
    assert value("orphan_queue_total") == 0
    remaining = queues.list()
    assert set(keep.queue_map.values()) <= remaining and "__consumer_offsets" in remaining
    assert remaining.isdisjoint(gone.queue_map.values())


def test_gc_archive_policy_keeps_topics(store: GraphStore) -> None:
    service, queues = make_service(
        store, orphan_ttl_seconds=0, orphan_grace_seconds=0, gc_policy="archive"
    )
    gone = service.engine.diff(req(chain_dag(2, salt="arch"), strategy="arch"))
    service.store.retire_strategy("arch")
    assert sorted(service.gc.sweep().processed) == sorted(gone.queue_map.values())
    assert set(gone.queue_map.values()) <= queues.list()
    assert service.gc.sweep().orphans == 0


def test_resubmitting_retired_strategy_revives_it(store: GraphStore) -> None:
    service, _ = make_service(store, orphan_ttl_seconds=0, orphan_grace_seconds=0)
    dag = chain_dag(2, salt="revive")
    first = service.engine.diff(req(dag, strategy="rev"))
    assert service.store.retire_strategy("rev")
    assert set(first.queue_map.values()).isdisjoint(service.store.active_queues())
    service.engine.diff(req(dag, strategy="rev"))
    assert set(first.queue_map.values()) <= service.store.active_queues()
    assert service.gc.sweep().processed == []
