"""Where a diff runs: small DAGs on embedded backends on the event loop, the rest in a
worker thread -- and the loop never waits for a busy store; the stream and the unary
call answer alike.  A real gRPC server in this process, the real client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from qmtl.foundation.contracts import SubmissionRequest
from qmtl.foundation.dag import chain_dag, node_id_for
from qmtl.services.dagmanager.client import DagManagerClient
from qmtl.services.dagmanager.grpc_service import INLINE_DIFF_BYTES, DagManagerServicer, register
from qmtl.services.dagmanager.proto import dagmanager_pb2 as pb
from qmtl.services.dagmanager.proto import dagmanager_pb2_grpc as pb_grpc
from qmtl.services.dagmanager.proto_codec import CHUNK_SIZE
from qmtl.services.dagmanager.service import DagManagerService
from qmtl.services.dagmanager.store import open_graph_store
from qmtl.testing.metrics import Snapshot
from qmtl.testing.stalls import LoopWatch, held_elsewhere

from .conftest import make_service


def _recording(service: DagManagerService) -> list[int]:
    """Thread ids the engine's diffs ran on (a diff refused for waiting runs twice)."""
    threads: list[int] = []
    diff = service.engine.diff

    def recorded(request: SubmissionRequest) -> Any:
        threads.append(threading.get_ident())
        return diff(request)

    service.engine.diff = recorded  # type: ignore[method-assign]
    return threads


def _serve(
    service: DagManagerService,
    body: Callable[[DagManagerClient], Any],
    servicer: type[DagManagerServicer] = DagManagerServicer,
) -> tuple[Any, int]:
    """Run ``body(client)`` against a server on this loop; return its result and the
    loop's thread id."""

    async def run() -> tuple[Any, int]:
        server = grpc.aio.server()
        register(servicer(service), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        client = DagManagerClient(f"127.0.0.1:{port}")
        try:
            return await body(client), threading.get_ident()
        finally:
            await client.close()
            await server.stop(None)

    return asyncio.run(run())


def _big_dag() -> str:
    """A DAG just over the inline limit (a long config on one node)."""
    dag = json.loads(chain_dag(2, salt="big"))
    dag["nodes"][1]["config"] = {"blob": "x" * INLINE_DIFF_BYTES}
    dag["nodes"][1]["node_id"] = node_id_for(dag["nodes"][1])
    return json.dumps(dag)


def test_small_diffs_on_embedded_backends_run_on_the_loop_and_big_ones_in_a_thread(
    tmp_path: Path,
) -> None:
    service, _ = make_service(open_graph_store(f"sqlite:{tmp_path / 'g.db'}"))
    threads = _recording(service)
    big = _big_dag()
    assert len(big) > INLINE_DIFF_BYTES

    async def body(client: DagManagerClient) -> list[int]:
        small = await client.diff(SubmissionRequest("small", chain_dag(20, salt="inline")))
        large = await client.diff(SubmissionRequest("large", big))
        return [small.new_queues, large.new_queues]

    created, loop_thread = _serve(service, body)
    assert created == [20, 2]
    assert threads[0] == loop_thread and threads[1] != loop_thread


def test_with_drills_or_postgresql_every_diff_runs_in_a_thread(
    tmp_path: Path, postgres: Any
) -> None:
    """Fault wrappers can sleep (diff_delay) and PostgreSQL is a network away: neither
    may hold the loop that answers /health and /metrics."""
    drilled, _ = make_service(open_graph_store(f"sqlite:{tmp_path / 'g.db'}"), drills=True)
    remote, _ = make_service(open_graph_store(postgres.new_database()))
    for service in (drilled, remote):
        assert not DagManagerServicer(service).inline
        threads = _recording(service)

        async def body(client: DagManagerClient) -> int:
            return (await client.diff(SubmissionRequest("s", chain_dag(5)))).new_queues

        created, loop_thread = _serve(service, body)
        assert created == 5 and threads and loop_thread not in threads


def test_a_busy_store_sends_the_small_diff_to_a_thread_and_the_loop_keeps_running(
    tmp_path: Path,
) -> None:
    """Another thread holds the SQLite store (a big diff's write, a GC sweep): the small
    diff must not wait for it on the loop.  It is refused at once, runs in a thread once
    the store is free, and is counted once, as a success."""
    store = open_graph_store(f"sqlite:{tmp_path / 'g.db'}")
    service, _ = make_service(store)
    threads = _recording(service)
    snap = Snapshot("diff_requests_total", "diff_failures_total")

    async def body(client: DagManagerClient) -> tuple[int, float]:
        with held_elsewhere(store.transaction) as release:
            asyncio.get_running_loop().call_later(1.0, release.set)
            async with LoopWatch() as watch:
                result = await client.diff(SubmissionRequest("s", chain_dag(10, salt="busy")))
        return result.new_queues, watch.worst

    (created, worst_gap), loop_thread = _serve(service, body)
    assert created == 10
    assert worst_gap < 0.5, f"the event loop stalled for {worst_gap:.2f} s"
    assert threads[0] == loop_thread and len(threads) == 2 and threads[1] != loop_thread
    assert snap.delta("diff_requests_total") == 1 and snap.delta("diff_failures_total") == 0


def test_the_stream_and_the_unary_call_answer_the_same_diff(tmp_path: Path) -> None:
    """The client's ``DiffUnary`` (one message) and the ``Diff`` stream (chunks of
    ``CHUNK_SIZE`` entries) answer the same cold diff alike, each on a fresh store:
    queue map, buffering, version, sentinel and CRC."""
    nodes = CHUNK_SIZE + 5
    dag = chain_dag(nodes, salt="chunks")

    async def unary_call(client: DagManagerClient) -> Any:
        return await client.diff(SubmissionRequest("s-chunks", dag))

    async def stream_call(client: DagManagerClient) -> list[Any]:
        async with grpc.aio.insecure_channel(client.target) as channel:
            stub = pb_grpc.DagManagerStub(channel)  # type: ignore[no-untyped-call]
            request = pb.DiffRequest(strategy_id="s-chunks", dag_json=dag)
            return [chunk async for chunk in stub.Diff(request, timeout=60)]

    def fresh(name: str) -> DagManagerService:
        return make_service(open_graph_store(f"sqlite:{tmp_path / name}"))[0]

    unary, _ = _serve(fresh("unary.db"), unary_call)
    chunks, _ = _serve(fresh("stream.db"), stream_call)
    assert unary.new_queues == nodes and len(unary.queue_map) == nodes and unary.buffering
    assert [chunk.final for chunk in chunks] == [False, True]
    assert len(chunks[0].queue_map) == CHUNK_SIZE
    streamed = {k: v for chunk in chunks for k, v in chunk.queue_map.items()}
    assert streamed == unary.queue_map
    last = chunks[-1]
    assert (last.version, last.sentinel_id, last.crc32, last.total_nodes, last.new_queues) == (
        unary.version, unary.sentinel_id, unary.crc32, nodes, nodes,
    )  # fmt: skip
    assert [(b.node_id, b.period, b.interval) for b in last.buffering] == [
        (b.node_id, b.period, b.interval) for b in unary.buffering
    ]


def test_a_dag_manager_without_diff_unary_is_diffed_through_the_stream(tmp_path: Path) -> None:
    """A rolling upgrade that reaches the Gateways first: the older DAG Manager answers
    UNIMPLEMENTED to DiffUnary, and the client diffs through the stream from then on."""
    asked: list[str] = []

    class Older(DagManagerServicer):
        async def DiffUnary(self, request: Any, context: Any) -> Any:
            asked.append("DiffUnary")
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

        async def Diff(self, request: Any, context: Any) -> Any:
            asked.append("Diff")
            async for chunk in super().Diff(request, context):
                yield chunk

    service, _ = make_service(open_graph_store(f"sqlite:{tmp_path / 'g.db'}"))

    async def body(client: DagManagerClient) -> list[int]:
        first = await client.diff(SubmissionRequest("older-1", chain_dag(3, salt="older")))
        second = await client.diff(SubmissionRequest("older-2", chain_dag(4, salt="older")))
        return [first.new_queues, second.new_queues]

    (created, _) = _serve(service, body, Older)
    assert created == [3, 1]
    assert asked == ["DiffUnary", "Diff", "Diff"]


def test_an_unreachable_dag_manager_is_retried_every_few_seconds() -> None:
    """gRPC's own backoff grows to 120 s; a DAG Manager back from a restart must be found
    again within seconds.  A listener that drops every connection counts the attempts of
    a client that keeps asking; the gaps between them stay under 5 s (gRPC's defaults
    reach 6.5 s by the 16th second)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    attempts: list[float] = []
    done = threading.Event()

    def drop_every_connection() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            attempts.append(time.monotonic())
            conn.close()

    async def keep_asking(target: str, seconds: float) -> None:
        client = DagManagerClient(target)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await client.reachable()
            await asyncio.sleep(0.2)
        await client.close()

    dropper = threading.Thread(target=drop_every_connection, daemon=True)
    dropper.start()
    try:
        port = listener.getsockname()[1]
        asyncio.run(keep_asking(f"127.0.0.1:{port}", 20.0))
    finally:
        done.set()
        dropper.join()
        listener.close()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(attempts) >= 6, attempts
    assert max(gaps) < 5.0, [round(g, 1) for g in gaps]
