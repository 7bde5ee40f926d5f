"""Contract <-> protobuf, once for the DAG Manager's server and its client.

A :class:`SubmissionRequest` travels as a ``DiffRequest`` (the fields the diff needs; the
admin URL and metadata stay with the Gateway) and a :class:`DiffResult` comes back as
``DiffChunk`` messages: the queue map split over chunks, everything else on the last,
``final`` one.  A round trip through these functions gives back an equal value.
"""

from __future__ import annotations

from collections.abc import Iterable

from qmtl.foundation.contracts import BufferInstruction, DiffResult, SubmissionRequest
from qmtl.foundation.errors import BackendUnavailable
from qmtl.services.dagmanager.proto import dagmanager_pb2 as pb

__all__ = [
    "CHUNK_SIZE",
    "request_from_proto",
    "request_to_proto",
    "result_chunks",
    "result_from_chunks",
]

#: Queue-map entries per streamed chunk; keeps each message far below gRPC's 4 MiB default.
CHUNK_SIZE = 2000


def request_to_proto(request: SubmissionRequest) -> pb.DiffRequest:
    return pb.DiffRequest(
        strategy_id=request.strategy_id,
        dag_json=request.dag_json,
        world_id=request.world_id,
        execution_domain=request.execution_domain,
        as_of=request.as_of,
        partition=request.partition,
    )


def request_from_proto(message: pb.DiffRequest) -> SubmissionRequest:
    """The contract for a received request (validated: bad fields raise InvalidRequest)."""
    return SubmissionRequest(
        strategy_id=message.strategy_id,
        dag_json=message.dag_json,
        world_id=message.world_id,
        execution_domain=message.execution_domain,
        as_of=message.as_of,
        partition=message.partition,
    )


def result_chunks(result: DiffResult, chunk_size: int = CHUNK_SIZE) -> list[pb.DiffChunk]:
    """The result as messages of at most ``chunk_size`` queue-map entries; the last one
    is ``final`` and carries everything else."""
    items = list(result.queue_map.items())
    chunks = [
        pb.DiffChunk(queue_map=dict(items[start : start + chunk_size]))
        for start in range(0, max(len(items), 1), chunk_size)
    ]
    last = chunks[-1]
    last.final = True
    last.sentinel_id = result.sentinel_id
    last.version = result.version
    last.crc32 = result.crc32
    last.total_nodes = result.total_nodes
    last.new_queues = result.new_queues
    last.buffering.extend(
        pb.BufferInstruction(node_id=b.node_id, period=b.period, interval=b.interval)
        for b in result.buffering
    )
    return chunks


def result_from_chunks(chunks: Iterable[pb.DiffChunk]) -> DiffResult:
    """The diff from its chunks (a stream's, or the one reply of ``DiffUnary``)."""
    queue_map: dict[str, str] = {}
    final: pb.DiffChunk | None = None
    for chunk in chunks:
        queue_map.update(chunk.queue_map)
        if chunk.final:
            final = chunk
    if final is None:
        raise BackendUnavailable("DAG Manager ended the diff without a final chunk")
    return DiffResult(
        queue_map=queue_map,
        buffering=tuple(
            BufferInstruction(b.node_id, b.period, b.interval) for b in final.buffering
        ),
        sentinel_id=final.sentinel_id,
        version=final.version,
        crc32=final.crc32,
        new_queues=final.new_queues,
        total_nodes=final.total_nodes,
    )
