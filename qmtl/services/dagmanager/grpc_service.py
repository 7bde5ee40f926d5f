"""gRPC front of the DAG Manager: Diff (server-streaming) and Health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from qmtl.foundation.common.tracing import context_from_grpc_metadata, get_tracer
from qmtl.services.dagmanager.diff import DiffError, DiffRequestData, DiffResult
from qmtl.services.dagmanager.proto import dagmanager_pb2 as pb
from qmtl.services.dagmanager.proto import dagmanager_pb2_grpc as pb_grpc
from qmtl.services.dagmanager.service import DagManagerService

__all__ = ["CHUNK_SIZE", "DagManagerServicer", "result_chunks"]

#: DAGs up to this size are diffed on the event loop (well under a millisecond of work).
INLINE_DIFF_BYTES = 64 * 1024
#: Queue-map entries per streamed chunk; keeps each message far below gRPC's 4 MiB default.
CHUNK_SIZE = 2000
_tracer = get_tracer("qmtl.dagmanager")


def result_chunks(result: DiffResult) -> list[pb.DiffChunk]:
    items = list(result.queue_map.items())
    chunks = [
        pb.DiffChunk(queue_map=dict(items[start : start + CHUNK_SIZE]))
        for start in range(0, max(len(items), 1), CHUNK_SIZE)
    ]
    last = chunks[-1]
    last.final = True
    last.sentinel_id = result.sentinel_id
    last.version = result.version
    last.crc32 = result.crc32
    last.total_nodes = result.total_nodes
    last.new_queues = result.new_queues
    last.buffering.extend(
        pb.BufferInstruction(node_id=n, period=p, interval=i) for n, p, i in result.buffering
    )
    return chunks


class DagManagerServicer(pb_grpc.DagManagerServicer):
    def __init__(self, service: DagManagerService) -> None:
        self.service = service

    async def Diff(
        self, request: pb.DiffRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DiffChunk]:
        parent = context_from_grpc_metadata(context.invocation_metadata())
        with _tracer.start_as_current_span("dagmanager.Diff", context=parent) as span:
            span.set_attribute("qmtl.strategy_id", request.strategy_id)
            data = DiffRequestData(
                strategy_id=request.strategy_id,
                dag_json=request.dag_json,
                world_id=request.world_id,
                execution_domain=request.execution_domain,
                as_of=request.as_of,
                partition=request.partition,
            )
            try:
                if (
                    len(request.dag_json) <= INLINE_DIFF_BYTES
                    and self.service.store.dialect == "sqlite"
                ):
                    result = self.service.engine.diff(
                        data
                    )  # small: a thread hop costs more than the diff
                else:
                    result = await asyncio.to_thread(self.service.engine.diff, data)
            except DiffError as exc:
                span.set_attribute("qmtl.error", exc.code)
                await context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
                return
            span.set_attribute("qmtl.nodes", result.total_nodes)
        for chunk in result_chunks(result):
            yield chunk

    async def Health(
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext
    ) -> pb.HealthReply:
        store_ok = await asyncio.to_thread(_safe_ping, self.service)
        queues_ok = await asyncio.to_thread(self.service.queues.probe)
        detail = f"store={'ok' if store_ok else 'down'} queues={'ok' if queues_ok else 'down'}"
        return pb.HealthReply(ok=store_ok and queues_ok, detail=detail)


def _safe_ping(service: DagManagerService) -> bool:
    try:
        return service.store.ping()
    except Exception:
        return False
