"""Diff engine, GC and breakers against real graph stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import collections
import math
import threading
import time

import pytest

from qmtl.foundation.contracts import SubmissionRequest
from qmtl.foundation.dag import chain_dag, parse_dag
from qmtl.foundation.errors import (
    BackendUnavailable,
    CrossContextViolation,
    InvalidDag,
    InvalidRequest,
    QueueCreationFailed,
    QueueNameCollision,
)
from qmtl.services.dagmanager.queues import InProcessQueues
from qmtl.services.dagmanager.store import GraphStore, open_graph_store
from qmtl.testing.metrics import Snapshot, value

from .conftest import make_service

COUNTERS = (
    "diff_requests_total", "diff_failures_total", "queue_create_error_total",
    "kafka_breaker_open_total", "graphstore_breaker_open_total",
)  # fmt: skip


def req(dag: str, strategy: str = "s1", **ctx: str) -> SubmissionRequest:
    return SubmissionRequest(strategy_id=strategy, dag_json=dag, **ctx)


def test_cold_then_warm_diff_reuses_queues(store: GraphStore) -> None:
    """Another strategy made of the same nodes reuses their queues (warm: nothing new)."""
    service, queues = make_service(store)
    snap = Snapshot(*COUNTERS)
    dag = chain_dag(20, salt="cold-warm")
    cold = service.engine.diff(req(dag))
    warm = service.engine.diff(req(dag, strategy="s2"))
    assert cold.new_queues == 20 and warm.new_queues == 0
    assert cold.queue_map == warm.queue_map and len(set(cold.queue_map.values())) == 20
    assert cold.crc32 == warm.crc32 == parse_dag(dag).crc32
    assert cold.sentinel_id == f"s1:{cold.version}:sentinel"
    assert len(cold.buffering) == 20
    assert (cold.buffering[0].period, cold.buffering[0].interval) == (10, 60)
    assert warm.buffering == ()
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


def test_same_dag_under_two_contexts_is_isolated_by_default(store: GraphStore) -> None:
    """The promotion path (backtest, then live) gets its own queues and counts no hit."""
    service, queues = make_service(store)
    dag = chain_dag(3, salt="promote")
    hits = Snapshot("cross_context_cache_hit_total")
    back = service.engine.diff(req(dag, world_id="w1", execution_domain="backtest"))
    live = service.engine.diff(req(dag, world_id="w1", execution_domain="live"))
    as_of = service.engine.diff(
        req(dag, world_id="w1", execution_domain="live", as_of="2024-01-31")
    )
    part = service.engine.diff(req(dag, world_id="w1", execution_domain="live", partition="t7"))
    maps = [set(r.queue_map.values()) for r in (back, live, as_of, part)]
    for i, a in enumerate(maps):
        for b in maps[i + 1 :]:
            assert a.isdisjoint(b)
    assert all(r.new_queues == 3 for r in (back, live, as_of, part))
    assert all(q.startswith("w1.live.") for q in live.queue_map.values())
    assert all(q.startswith("w1.backtest.") for q in back.queue_map.values())
    assert hits.delta("cross_context_cache_hit_total") == 0
    assert service.cross_context_report()["hits"] == []
    assert len(queues.list()) == 12


def test_shared_queues_opt_out_refuses_and_counts_a_second_context(store: GraphStore) -> None:
    """namespace_queues: false shares queues; reusing one from another context is a breach."""
    service, _ = make_service(store, namespace_queues=False)
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
    with pytest.raises(CrossContextViolation, match="namespace_queues is false"):
        service.engine.diff(req(dag, strategy="s2", world_id="w2"))
    assert value("cross_context_cache_hit_total", **labels) == hits + 1
    assert store.counts() == before
    report = service.cross_context_report()
    assert report["hits"] and report["last_hit"]
    assert service.reset_cross_context() >= 3
    assert value("cross_context_cache_hit_total", **labels) == 0
    assert service.cross_context_report()["last_reset"] >= report["last_hit"]


def test_queue_name_collision_is_a_conflict_not_an_outage(store: GraphStore) -> None:
    """A queue already bound to another node is refused as the client's problem."""
    service, _ = make_service(store)
    dag = chain_dag(2, salt="collide")
    first = service.engine.diff(req(dag))
    queue = next(iter(first.queue_map.values()))
    with store.transaction() as cur:  # the queue now belongs to another node
        cur.execute(
            store.db.q("UPDATE queue_bindings SET node_id = ? WHERE queue = ?"),
            ("Nsomeoneelse", queue),
        )
    snap = Snapshot(*COUNTERS)
    with pytest.raises(QueueNameCollision, match="already bound to node Nsomeoneelse"):
        service.engine.diff(req(dag, strategy="s9"))
    assert snap.delta("graphstore_breaker_open_total") == 0 and not service.store_breaker.failures


def test_context_fields_are_bounded(store: GraphStore) -> None:
    """Client context values become metric labels: shape and length are checked."""
    service, _ = make_service(store)
    for bad in ({"as_of": "x" * 41}, {"partition": "a b"}, {"world_id": "w\x00"},
                {"execution_domain": "prod"}):  # fmt: skip
        with pytest.raises(InvalidRequest):
            service.engine.diff(req(chain_dag(2), **bad))


def test_queue_creation_failure_counts_and_stores_nothing(store: GraphStore) -> None:
    service, queues = make_service(store, drills=True)
    service.faults.update({"queue_create_fail": True})
    before = store.counts()
    snap = Snapshot(*COUNTERS)
    with pytest.raises(QueueCreationFailed, match="4 of 4 queue"):
        service.engine.diff(req(chain_dag(4, salt="qfail")))
    assert snap.delta("queue_create_error_total") == 4
    assert snap.delta("diff_failures_total") == 1
    assert store.counts() == before and queues.list() == set()


def test_queue_backend_down_opens_kafka_breaker_and_probe_resets(store: GraphStore) -> None:
    service, _queues = make_service(store, drills=True)
    snap = Snapshot(*COUNTERS)
    service.faults.update({"queue_backend_down": True})
    for i in range(3):
        with pytest.raises(BackendUnavailable, match=r"unreachable|down"):
            service.engine.diff(req(chain_dag(2, salt=f"down{i}")))
    assert service.kafka_breaker.is_open
    assert snap.delta("kafka_breaker_open_total") == 1 and value("kafka_breaker_state") == 1
    with pytest.raises(BackendUnavailable, match="circuit breaker 'kafka' is open"):
        service.engine.diff(req(chain_dag(2, salt="refused")))
    service.probe_breakers()
    assert service.kafka_breaker.is_open, "probe must fail while the backend is down"
    service.faults.clear()
    service.probe_breakers()
    assert not service.kafka_breaker.is_open and value("kafka_breaker_state") == 0
    assert service.engine.diff(req(chain_dag(2, salt="back"))).new_queues == 2


def test_sentinel_gap_is_visible_then_closes(store: GraphStore) -> None:
    service, _ = make_service(store, drills=True)
    dag = chain_dag(2, salt="sentinel")
    service.faults.update({"sentinel_skip": True})
    result = service.engine.diff(req(dag, strategy="gap"))
    service.refresh_sentinel_gaps()
    assert ("gap", result.version) in service.sentinel_gaps
    assert value("sentinel_gap_count") == len(service.sentinel_gaps) >= 1
    service.faults.clear()
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


def test_queue_ages_reads_only_the_queues_asked_about(store: GraphStore) -> None:
    """The GC asks for its orphans' ages only; a sweep must not copy every binding."""
    service, _ = make_service(store)
    before = time.time()
    bound = list(
        service.engine.diff(req(chain_dag(3, salt="ages"), strategy="ages")).queue_map.values()
    )
    store.note_seen(["external-topic"], 5.0)
    ages = store.queue_ages([bound[0], "external-topic", "never-seen"])
    assert set(ages) == {bound[0], "external-topic"}
    assert ages["external-topic"] == 5.0 and before <= ages[bound[0]] <= time.time()
    assert store.queue_ages([]) == {}


def test_lag_monitor_leaves_the_store_alone_when_the_backend_measures_no_lag(
    store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process queues have no consumer groups: a poll must not list every active queue."""
    service, queues = make_service(store)
    service.engine.diff(req(chain_dag(2, salt="lag"), strategy="lag"))
    assert not queues.measures_lag

    def listed() -> set[str]:
        raise AssertionError("the lag monitor listed every active queue for nothing")

    monkeypatch.setattr(store, "active_queues", listed)
    assert service.lag.poll() == []


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


def test_queues_recorded_one_row_per_queue_by_older_stores_stay_active(
    store: GraphStore,
) -> None:
    """Stores written before version queues became one list keep their per-queue rows,
    and GC must still see those queues as in use."""
    service, queues = make_service(store, orphan_ttl_seconds=0, orphan_grace_seconds=0)
    fresh = service.engine.diff(req(chain_dag(3, salt="listed"), strategy="new"))
    queues.create(["legacy_topic_v1"])
    with store.transaction() as cur:  # what an older DAG Manager wrote for "old"
        cur.execute(store.db.q(
            "INSERT INTO dm_deployments (strategy_id, ctx, current_version, retired, updated_at) "
            "VALUES (?, ?, ?, 0, ?)"), ("old", "", "v-old", time.time()))  # fmt: skip
        cur.execute(store.db.q(
            "INSERT INTO dm_version_queues (strategy_id, ctx, version, queue) "
            "VALUES (?, ?, ?, ?)"), ("old", "", "v-old", "legacy_topic_v1"))  # fmt: skip
    assert store.active_queues() == set(fresh.queue_map.values()) | {"legacy_topic_v1"}
    assert service.gc.sweep().processed == []  # TTL 0: an orphan would go at once
    assert "legacy_topic_v1" in queues.list()
    assert store.retire_strategy("old")
    assert store.active_queues() == set(fresh.queue_map.values())
    assert service.gc.sweep().processed == ["legacy_topic_v1"]


def test_plan_cache_is_a_byte_budget(store: GraphStore) -> None:
    """Plans are evicted to stay within dagmanager.plan_cache_bytes; size is exported."""
    service, _ = make_service(store, plan_cache_bytes=200_000)
    for i in range(40):
        service.engine.diff(req(chain_dag(50, salt=f"budget{i}"), strategy=f"b{i}"))
    plans = service.engine.plans
    assert 0 < plans.nbytes <= 200_000 and 0 < len(plans) < 40
    assert value("dagmanager_plan_cache_bytes") == plans.nbytes
    assert value("dagmanager_plan_cache_entries") == len(plans)


def test_replicas_diffing_the_same_dag_create_each_queue_once(postgres) -> None:  # type: ignore[no-untyped-def]
    """Two DAG Managers on one PostgreSQL graph store, the same cold DAG at once: one
    queue map, each queue existing once and bound once (replicas need PostgreSQL; SQLite is one process)."""
    graph_store_spec = postgres.new_database()
    requests: collections.Counter[str] = collections.Counter()

    class CountingQueues(InProcessQueues):
        def create(self, topics):  # type: ignore[no-untyped-def]
            requests.update(topics)
            return super().create(topics)

    shared = CountingQueues()
    stores = [open_graph_store(graph_store_spec) for _ in range(2)]
    services = [make_service(s, queues=shared)[0] for s in stores]
    dag = chain_dag(30, salt="replicas")
    results: list[object] = [None, None]
    start = threading.Barrier(2)

    def run(i: int) -> None:
        start.wait()
        results[i] = services[i].engine.diff(req(dag, strategy=f"r{i}", world_id="w"))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    a, b = results
    assert a.queue_map == b.queue_map  # type: ignore[attr-defined]
    assert a.new_queues + b.new_queues == 30  # type: ignore[attr-defined]
    # Both may ask the backend for a topic (creation is idempotent and runs before
    # the transaction); it exists once, and exactly one replica binds it.
    assert set(requests) == set(a.queue_map.values()) and max(requests.values()) <= 2  # type: ignore[attr-defined]
    assert shared.list() == set(a.queue_map.values())  # type: ignore[attr-defined]
    for s in stores:
        s.close()


@pytest.mark.parametrize("writer", ["same connection", "another connection"])
def test_a_diff_sees_bindings_written_between_its_lookup_and_its_commit(
    graph_store_spec: str, writer: str
) -> None:
    """A diff reads its bindings, creates topics, then writes.  Whatever binds the same
    queues in between -- another diff thread of this process, or another process on the
    same store -- must be seen at the write: the first binder keeps the queues, and the
    late diff reports none of them as its own new queues (nor asks for their buffers)."""
    dag = chain_dag(5, salt=f"between-{writer}")
    first_store = open_graph_store(graph_store_spec)
    second_store = (
        first_store if writer == "same connection" else open_graph_store(graph_store_spec)
    )
    shared = InProcessQueues()
    second, _ = make_service(second_store, queues=shared)
    interleaved: list[object] = []

    class BindFirst(InProcessQueues):
        """Topic creation runs between the lookup and the write: the other diff runs here."""

        def create(self, topics):  # type: ignore[no-untyped-def]
            if not interleaved:
                interleaved.append(second.engine.diff(req(dag, strategy="other")))
            return shared.create(topics)

    first, _ = make_service(first_store, queues=BindFirst())
    late = first.engine.diff(req(dag, strategy="late"))
    (early,) = interleaved
    assert early.new_queues == 5 and late.new_queues == 0  # type: ignore[attr-defined]
    assert late.buffering == () and late.queue_map == early.queue_map  # type: ignore[attr-defined]
    for queue in late.queue_map.values():
        binding = first_store.binding(queue)
        assert binding is not None and binding.created_at > 0
    for s in {id(first_store): first_store, id(second_store): second_store}.values():
        s.close()


def test_a_queue_taken_by_another_context_in_between_is_refused(store: GraphStore) -> None:
    """With shared queues (isolation off), a diff under another context that binds the
    same queues between this diff's lookup and its commit makes this diff a violation,
    and nothing of this diff is stored."""
    dag = chain_dag(3, salt="taken")
    shared = InProcessQueues()
    other, _ = make_service(store, queues=shared, namespace_queues=False)
    interleaved: list[object] = []

    class BindFirst(InProcessQueues):
        def create(self, topics):  # type: ignore[no-untyped-def]
            if not interleaved:
                interleaved.append(other.engine.diff(req(dag, strategy="o", world_id="w2")))
            return shared.create(topics)

    late, _ = make_service(store, queues=BindFirst(), namespace_queues=False)
    with pytest.raises(CrossContextViolation):
        late.engine.diff(req(dag, strategy="late", world_id="w1"))
    assert interleaved and store.counts()["deployments"] == 1


def test_binding_leaves_active_queues_alone_and_revives_inactive_ones(
    store: GraphStore,
) -> None:
    """``bind`` never takes over a queue another node holds; it reports what it wrote."""
    with store.transaction() as cur:
        assert store.bind(cur, [("q1", "Na", "k")], {}, 1.0) == {"q1"}
    with store.transaction() as cur:
        cur.execute("UPDATE queue_bindings SET status = 'archived' WHERE queue = 'q1'")
        cur.execute(
            store.db.q(
                "INSERT INTO queue_bindings (queue, node_id, compute_key, context, created_at) "
                "VALUES (?, ?, ?, ?, ?)"
            ),
            ("q2", "Nb", "k", "{}", 1.0),
        )
    with store.transaction() as cur:
        written = store.bind(cur, [("q1", "Nc", "k2"), ("q2", "Nc", "k2")], {"w": "1"}, 2.0)
        assert written == {"q1"}
        assert store.lookup(cur, ["q1", "q2"]) == {
            "q1": ("k2", "Nc", None),
            "q2": ("k", "Nb", None),
        }
    revived = store.binding("q1")
    assert revived is not None and (revived.context, revived.created_at) == ({"w": "1"}, 2.0)


def test_a_quiet_store_is_not_read_twice(store: GraphStore) -> None:
    """A diff's write transaction binds its new queues without reading their bindings a
    second time: SQLite can tell that nothing was written since the diff's first read,
    PostgreSQL's upsert reports which rows it wrote.  (A write in between is the test
    above.)"""
    service, _ = make_service(store)
    reads: list[int] = []
    lookup = store.lookup

    def counting(cur, queues):  # type: ignore[no-untyped-def]
        reads.append(len(queues))
        return lookup(cur, queues)

    store.lookup = counting  # type: ignore[method-assign]
    assert service.engine.diff(req(chain_dag(4, salt="quiet"))).new_queues == 4
    assert reads == []


def test_the_same_submission_diffed_again_gets_the_first_answer(store: GraphStore) -> None:
    """A Gateway replica that died mid-diff leaves its submission to another replica,
    which diffs it again: the queues the first run bound are this submission's own, so
    the answer is the first one (new queues, buffering) -- not "nothing to warm up"."""
    service, _ = make_service(store)
    dag = chain_dag(3, salt="rerun")
    first = service.engine.diff(req(dag, world_id="w"))
    again = service.engine.diff(req(dag, world_id="w"))
    assert first.new_queues == again.new_queues == 3
    assert first.buffering == again.buffering and len(again.buffering) == 3
    other = service.engine.diff(req(dag, strategy="s2", world_id="w"))
    assert other.new_queues == 0 and other.buffering == ()
    # Bindings from before the column existed (created_by NULL) are nobody's own.
    with store.transaction() as cur:
        cur.execute("UPDATE queue_bindings SET created_by = NULL")
    assert service.engine.diff(req(dag, world_id="w")).new_queues == 0


def test_a_store_from_before_created_by_gains_the_column(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Opening an older SQLite store adds the column once; opening it again is a no-op."""
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE queue_bindings (queue TEXT PRIMARY KEY, node_id TEXT NOT NULL, "
            "compute_key TEXT NOT NULL, context TEXT NOT NULL, "
            "created_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL DEFAULT 'active')"
        )
        conn.execute("INSERT INTO queue_bindings VALUES ('q', 'N', 'k', '{}', 1.0, 'active')")
    for _ in range(2):
        opened = open_graph_store(f"sqlite:{path}")
        with opened.transaction() as cur:
            assert opened.lookup(cur, ["q"]) == {"q": ("k", "N", None)}
        opened.close()


def test_a_long_asset_never_cuts_the_node_hash_out_of_a_queue_name(store: GraphStore) -> None:
    """Names longer than Kafka's 249 characters used to be cut at the end, hash included:
    two different nodes with one long asset got one name (a false queue_name_collision).
    Short names are unchanged."""
    import json

    from qmtl.foundation.dag import SCHEMA, node
    from qmtl.services.dagmanager.queues import MAX_TOPIC, context_namespace, queue_name

    long_asset = "a" * 300
    first = node("StreamInput", tags=["x"], interval=60, period=2, asset=long_asset, code_hash="1")
    second = node("StreamInput", tags=["x"], interval=60, period=2, asset=long_asset, code_hash="2")
    dag = json.dumps({"schema": SCHEMA, "nodes": [first, second]})
    service, _ = make_service(store)
    result = service.engine.diff(req(dag, world_id="w" * 64, execution_domain="backtest"))
    names = set(result.queue_map.values())
    assert len(names) == 2 and all(len(n) <= MAX_TOPIC for n in names)
    parsed = parse_dag(dag)
    short = parse_dag(chain_dag(1, salt="short")).nodes
    only = next(iter(short.values()))
    assert queue_name(only, namespace=context_namespace("w", "live")) == (
        f"w.live.{context_namespace('w', 'live').split('.')[2]}.btc_streaminput_"
        f"{only.node_id[1:17]}_v1"
    )
    assert all(parsed.nodes[n].node_id[1:17] in q for n, q in result.queue_map.items())
