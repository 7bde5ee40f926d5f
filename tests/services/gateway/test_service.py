"""GatewayService in-process, against fakes of its ports (DAG Manager client, bus).

The submission log is the real SQLite one (it is the contract under test for leases and
final states); the DAG Manager is a fake that answers what each test scripts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from qmtl.foundation.breaker import AsyncCircuitBreaker
from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.contracts import DiffResult, SubmissionRequest
from qmtl.foundation.dag import chain_dag
from qmtl.foundation.errors import (
    BackendUnavailable,
    InvalidDag,
    QmtlError,
    QueueNameCollision,
    SubmissionNotPersisted,
    WorldFrozen,
)
from qmtl.foundation.http_errors import http_status
from qmtl.services.controlbus import ACK, FREEZE, UNFREEZE, Envelope, InProcessBus
from qmtl.services.dagmanager.client import is_remote_failure
from qmtl.services.gateway.service import GatewayService, Outcome
from qmtl.services.gateway.submissions import Submission, SubmissionLog
from qmtl.testing.clock import FakeClock
from qmtl.testing.metrics import Snapshot, value
from qmtl.testing.stalls import LoopWatch, held_elsewhere


class FakeDagManager:
    """Answers diffs with ``behaviour(request)``: a DiffResult, or raises."""

    def __init__(self, behaviour: Callable[[SubmissionRequest], Any]) -> None:
        self.behaviour = behaviour
        self.calls: list[SubmissionRequest] = []
        self.breaker = AsyncCircuitBreaker(3, name=None, is_failure=is_remote_failure)
        self.healthy = True

    async def _diff(self, request: SubmissionRequest) -> DiffResult:
        self.calls.append(request)
        outcome = self.behaviour(request)
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    async def diff(self, request: SubmissionRequest) -> DiffResult:
        return await self.breaker.call(self._diff, request)

    async def status(self) -> bool:
        return self.healthy

    async def reachable(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def result(request: SubmissionRequest) -> DiffResult:
    return DiffResult({"N1": f"q-{request.world_id}"}, (), "sentinel", "v1", 1, 1, 1)


def make(tmp_path: Path, client: FakeDagManager, **gateway: Any) -> GatewayService:
    """A Gateway on a clock the test moves (``service.clock.advance``): retry intervals and
    freeze deadlines pass when the test says, never by waiting."""
    config = QmtlConfig.model_validate({"gateway": {"retry_interval_seconds": 0.05, **gateway}})
    bus = InProcessBus()
    clock = FakeClock()
    service = GatewayService(
        config, log_port=SubmissionLog(f"sqlite:{tmp_path / 'log.db'}", clock=clock),
        client=client, bus=bus, instance_id="gw-test", clock=clock,
    )  # fmt: skip
    bus.start()
    return service


def req(salt: str = "a", **ctx: str) -> SubmissionRequest:
    return SubmissionRequest(strategy_id="s1", dag_json=chain_dag(2, salt=salt), **ctx)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def code(outcome: Outcome) -> int:
    """The status the HTTP adapter answers a taken submission with."""
    return 202 if outcome.queued else 200


def test_completed_and_duplicate(tmp_path: Path) -> None:
    client = FakeDagManager(result)
    service = make(tmp_path, client)
    first = run(service.submit(req()))
    again = run(service.submit(req()))
    assert code(first) == code(again) == 200 and again.body["duplicate"] is True
    assert again.body["queue_map"] == first.body["queue_map"] and len(client.calls) == 1


@pytest.mark.parametrize(
    ("error", "status", "error_code"),
    [
        (InvalidDag("nodes[0]: bad"), 422, "invalid_dag"),
        (QueueNameCollision("queue q is already bound to node N9"), 409, "queue_name_collision"),
    ],
)
def test_bad_data_is_rejected_never_an_outage_or_lost(
    tmp_path: Path, error: Exception, status: int, error_code: str
) -> None:
    """Rejected input: 4xx, stored rejected, no breaker failure, no retry, no lost request."""
    client = FakeDagManager(lambda _r: error)
    service = make(tmp_path, client, max_attempts=1)
    lost = Snapshot("lost_requests_total")
    with pytest.raises(QmtlError) as refused:
        run(service.submit(req()))
    assert http_status(refused.value) == status and refused.value.body()["error"] == error_code
    assert refused.value.body()["submission_id"] == req().submission_id()
    assert client.breaker.failures == 0 and not client.breaker.is_open
    assert run(service.retry_due()) == 0 and len(client.calls) == 1
    assert service.log.counts() == {"rejected": 1}
    with pytest.raises(QmtlError) as again:
        run(service.submit(req()))
    assert http_status(again.value) == status and again.value.body()["error"] == error_code
    assert again.value.body()["duplicate"] is True
    assert lost.delta("lost_requests_total") == 0


def test_outage_is_queued_then_retried_by_its_holder(tmp_path: Path) -> None:
    down = {"on": True}
    client = FakeDagManager(lambda r: BackendUnavailable("down") if down["on"] else result(r))
    service = make(tmp_path, client)
    outcome = run(service.submit(req()))
    assert code(outcome) == 202 and outcome.body["status"] == "queued"
    assert client.breaker.failures == 1
    down["on"] = False
    service.clock.advance(0.06)
    assert run(service.retry_due()) == 1
    assert service.log.counts() == {"completed": 1}


def test_retries_are_bounded_and_abandoned_ones_are_lost(tmp_path: Path) -> None:
    client = FakeDagManager(lambda _r: BackendUnavailable("down"))
    service = make(tmp_path, client, max_attempts=2)
    lost = Snapshot("lost_requests_total")
    run(service.submit(req()))
    for _ in range(5):
        client.breaker.reset()
        service.clock.advance(0.06)
        run(service.retry_due())
    assert service.log.counts() == {"abandoned": 1}
    assert lost.delta("lost_requests_total") == 1


def test_an_abandoned_submission_goes_through_once_its_cause_is_gone(tmp_path: Path) -> None:
    """Abandoned is not forever: the same body submitted again starts afresh (attempts
    from zero) and completes; it used to answer 503 "abandoned" every time."""
    down = {"on": True}
    client = FakeDagManager(lambda r: BackendUnavailable("down") if down["on"] else result(r))
    service = make(tmp_path, client, max_attempts=1)
    run(service.submit(req()))
    for _ in range(3):
        client.breaker.reset()
        service.clock.advance(0.06)
        run(service.retry_due())
    assert service.log.counts() == {"abandoned": 1}
    down["on"] = False
    client.breaker.reset()
    again = run(service.submit(req()))
    assert code(again) == 200 and again.body["status"] == "completed", again.body
    assert service.log.counts() == {"completed": 1}
    assert run(service.submit(req())).body["duplicate"] is True


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def test_a_dead_replicas_rows_are_taken_over_at_once_a_live_ones_are_not(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Rows leased for a minute: another replica leaves them alone while their owner
    renews its liveness, and claims them the moment it stops (not a minute later)."""
    if backend == "sqlite":
        spec = f"sqlite:{tmp_path / 'shared.db'}"
    else:
        spec = request.getfixturevalue("postgres").new_database()
    first, second = SubmissionLog(spec), SubmissionLog(spec)
    try:
        first.alive("gw-a", 5.0)
        second.alive("gw-b", 5.0)
        sub = Submission(req().submission_id(), req(), "pending")
        assert first.insert(sub, "gw-a", lease_seconds=60) is None
        assert second.claim("gw-b", 60, grace=5) == []
        first.gone("gw-a")  # or its lease lapses: the same for claim
        claimed = second.claim("gw-b", 60, grace=5)
        assert [c.submission_id for c in claimed] == [sub.submission_id]
        assert second.claim("gw-b", 60, grace=5) == [], "claimed once"
    finally:
        first.close()
        second.close()


def test_a_result_that_cannot_be_stored_is_answered_queued_and_stored_later(
    tmp_path: Path,
) -> None:
    """The diff succeeded but the log refused the result (a full disk): the answer is
    202 queued (JSON), the row stays pending, and a retry stores it once writes work."""
    import sqlite3

    client = FakeDagManager(result)
    service = make(tmp_path, client)
    complete = service.log.complete
    full = {"on": True}

    def refusing(*args: Any) -> bool:
        if full["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        return complete(*args)

    service.log.complete = refusing  # type: ignore[method-assign]
    outcome = run(service.submit(req()))
    assert code(outcome) == 202 and outcome.body["status"] == "queued"
    assert "could not be stored" in outcome.body["message"]
    assert service.log.counts() == {"pending": 1}
    full["on"] = False
    service.clock.advance(0.06)
    run(service.retry_due())
    assert service.log.counts() == {"completed": 1}


def test_a_log_that_refuses_writes_answers_503_and_counts_lost(tmp_path: Path) -> None:
    client = FakeDagManager(result)
    service = make(tmp_path, client)
    service.log.db.close()  # every write now fails like a dead disk
    lost = Snapshot("lost_requests_total")
    with pytest.raises(SubmissionNotPersisted) as refused:
        run(service.submit(req()))
    assert http_status(refused.value) == 503 and refused.value.body()["retryable"] is True
    assert lost.delta("lost_requests_total") == 1 and client.calls == []


def test_an_in_flight_submission_is_never_retried_and_results_are_never_replaced(
    tmp_path: Path,
) -> None:
    """The retry loop leaves leased rows alone; a final state is written once."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request: SubmissionRequest) -> DiffResult:
        entered.set()
        await release.wait()
        return result(request)

    client = FakeDagManager(slow)
    service = make(tmp_path, client)

    async def scenario() -> None:
        first = asyncio.create_task(service.submit(req()))
        await entered.wait()  # the submission is leased and waiting on the DAG Manager
        assert await service.retry_due() == 0, "an in-flight submission must not be claimed"
        release.set()
        assert code(await first) == 200

    run(scenario())
    assert len(client.calls) == 1
    sid = req().submission_id()
    stored = service.log.get(sid)
    assert stored is not None and stored.result is not None
    other = DiffResult({"N1": "another"}, (), "x", "v9", 0, 0, 1)
    assert service.log.complete(sid, other) is False
    assert service.log.get(sid).result == stored.result  # type: ignore[union-attr]


def test_freeze_is_acked_then_lapses_at_its_deadline(tmp_path: Path) -> None:
    """A world stays frozen only until the freeze's deadline, even with no unfreeze."""
    client = FakeDagManager(result)
    service = make(tmp_path, client)
    acks: list[Envelope] = []
    service.bus.subscribe(lambda e: acks.append(e) if e.type == ACK else None)
    freeze = Envelope(type=FREEZE, source="t", subject="w1",
                      data={"world_id": "w1", "run_id": "r1", "deadline": service.clock() + 0.3})  # fmt: skip
    service.bus.publish(freeze)
    assert [a.data["phase"] for a in acks] == ["freeze"] and acks[0].data["gateway_id"] == "gw-test"
    with pytest.raises(WorldFrozen) as frozen:
        run(service.submit(req(world_id="w1")))
    assert http_status(frozen.value) == 409 and frozen.value.code == "world_frozen"
    assert value("controlbus_apply_ack_total", world_id="w1", phase="freeze") >= 1
    service.clock.advance(0.35)
    assert code(run(service.submit(req(world_id="w1")))) == 200


def test_replayed_events_past_their_deadline_are_ignored(tmp_path: Path) -> None:
    service = make(tmp_path, FakeDagManager(result))
    acks: list[Envelope] = []
    service.bus.subscribe(lambda e: acks.append(e) if e.type == ACK else None)
    for kind in (FREEZE, UNFREEZE):
        service.bus.publish(Envelope(type=kind, source="t", subject="w2",
                                     data={"world_id": "w2", "run_id": "old", "deadline": time.time() - 1}))  # fmt: skip
    assert acks == [] and service.freezes.until("w2") is None


def test_submissions_with_an_admin_url_register_a_guard_source(tmp_path: Path) -> None:
    seen: list[str] = []

    async def registered() -> None:
        return None

    def register(request: SubmissionRequest) -> Coroutine[Any, Any, None]:
        seen.append(request.admin_url)  # counted when the Gateway starts the registration
        return registered()

    config = QmtlConfig()
    service = GatewayService(
        config, log_port=SubmissionLog(f"sqlite:{tmp_path / 'l.db'}"),
        client=FakeDagManager(result), bus=InProcessBus(), register_source=register,
    )  # fmt: skip

    async def both() -> None:
        sdk = "http://127.0.0.1:8001"
        base = req()
        await service.submit(SubmissionRequest(**{**base.to_dict(), "admin_url": sdk}))
        await service.submit(
            SubmissionRequest(**{**base.to_dict(), "admin_url": sdk, "partition": "p"})
        )

    run(both())
    assert seen == ["http://127.0.0.1:8001"], "each SDK process is registered once"


def test_stop_cancels_a_registration_still_waiting_on_the_worldservice(tmp_path: Path) -> None:
    started, outcome = asyncio.Event(), []

    async def hanging(request: SubmissionRequest) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a WorldService that never answers
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    log_port = SubmissionLog(f"sqlite:{tmp_path / 'l.db'}")
    service = GatewayService(
        QmtlConfig(), log_port=log_port, client=FakeDagManager(result), bus=InProcessBus(),
        register_source=hanging,
    )  # fmt: skip

    async def scenario() -> None:
        base = req()
        await service.submit(SubmissionRequest(**{**base.to_dict(), "admin_url": "http://sdk"}))
        await started.wait()
        await service.stop()
        assert outcome == ["cancelled"], "stop() returned with the registration still waiting"

    run(scenario())


def test_small_rows_of_a_local_log_are_written_on_the_loop_large_ones_off_it(
    tmp_path: Path,
) -> None:
    """A 2-node DAG's row is written on the event loop; a 100 KB DAG's row on the log
    thread, so a large write never holds the loop (and a PostgreSQL log never does)."""
    service = make(tmp_path, FakeDagManager(result))
    threads: list[str] = []
    insert = service.log.insert

    def recording_insert(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return insert(*args, **kwargs)

    service.log.insert = recording_insert  # type: ignore[method-assign]
    big = chain_dag(400, salt="big")
    assert len(big) > 64 * 1024

    async def go() -> list[int]:
        small = await service.submit(req("small"))
        large = await service.submit(SubmissionRequest(strategy_id="s2", dag_json=big))
        return [code(small), code(large)]

    assert run(go()) == [200, 200]
    assert threads[0] == threading.main_thread().name
    assert threads[1].startswith("gateway-log")


def test_a_busy_local_log_sends_the_write_to_a_log_thread_and_the_loop_keeps_running(
    tmp_path: Path,
) -> None:
    """Another thread holds the SQLite log (the retry loop's scan, a status read): a small
    submission's insert must not wait for it on the event loop."""
    service = make(tmp_path, FakeDagManager(result))
    log: Any = service.log
    threads: list[str] = []
    insert = log.insert

    def recording_insert(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return insert(*args, **kwargs)

    log.insert = recording_insert

    async def go() -> tuple[int, float]:
        with held_elsewhere(log.db.txn) as release:
            asyncio.get_running_loop().call_later(1.0, release.set)
            async with LoopWatch() as watch:
                outcome = await service.submit(req("busy"))
        return code(outcome), watch.worst

    status, worst_gap = run(go())
    assert status == 200
    assert worst_gap < 0.5, f"the event loop stalled for {worst_gap:.2f} s"
    assert threads[0] == threading.main_thread().name and threads[1].startswith("gateway-log")
    assert service.log.counts() == {"completed": 1}


@pytest.mark.integration
def test_a_submission_waiting_on_postgresql_does_not_hold_up_the_others(postgres: Any) -> None:
    """A PostgreSQL log gets a thread per pooled connection.  One submission whose log
    write waits on a row lock leaves every other submission free; with one log thread
    they all queued behind it (and behind a hung server, one deadline after another)."""
    import psycopg

    dsn = postgres.new_database()
    log = SubmissionLog(dsn)
    assert log.concurrency > 1
    service = GatewayService(
        QmtlConfig(), log_port=log, client=FakeDagManager(result), bus=InProcessBus(),
        instance_id="gw-test",
    )  # fmt: skip
    waiting = req("waits")
    # Another session inserts the same submission id and leaves its transaction open:
    # the Gateway's insert of that id waits until the session ends.
    holder = psycopg.connect(dsn)
    try:
        holder.execute(
            "INSERT INTO gateway_submissions (submission_id, strategy_id, world_id, request, "
            "dag_json, status, created_at, updated_at) VALUES (%s, 's1', '', '{}', '{}', "
            "'pending', 0, 0)",
            (waiting.submission_id(),),
        )

        async def scenario() -> tuple[int, bool, int]:
            held = asyncio.create_task(service.submit(waiting))
            await asyncio.sleep(0)  # its insert is on a log thread, waiting on the lock
            other = await asyncio.wait_for(service.submit(req("free")), timeout=60)
            still_waiting = not held.done()
            holder.rollback()  # the session ends without the row: the insert goes ahead
            return code(other), still_waiting, code(await asyncio.wait_for(held, 60))

        other_status, still_waiting, held_status = run(scenario())
    finally:
        holder.close()
        log.close()
    assert other_status == 200
    assert still_waiting, "the held submission finished before its lock was released"
    assert held_status == 200
