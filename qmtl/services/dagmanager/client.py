"""Async gRPC client of the DAG Manager (used by the Gateway, tests and benchmarks).

``diff`` goes through :attr:`breaker` (when given); ``status`` never does, so the
seed's recipe works even while the breaker is open::

    if await client.status():
        client.breaker.reset()

Importing this module does not register DAG Manager metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from qmtl.foundation.common import AsyncCircuitBreaker
from qmtl.foundation.common.tracing import grpc_metadata
from qmtl.services.dagmanager.proto import dagmanager_pb2 as pb
from qmtl.services.dagmanager.proto import dagmanager_pb2_grpc as pb_grpc

__all__ = ["CLIENT_ERRORS", "DagManagerClient", "DiffReply", "is_remote_failure"]

#: Statuses that say the request was bad, not that the DAG Manager is unhealthy.
CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
    }
)


def is_remote_failure(exc: BaseException) -> bool:
    """Breaker filter: only transport/server failures count, not rejected input."""
    return not (isinstance(exc, grpc.aio.AioRpcError) and exc.code() in CLIENT_ERRORS)


@dataclass
class DiffReply:
    queue_map: dict[str, str] = field(default_factory=dict)
    buffering: list[tuple[str, int, int]] = field(default_factory=list)
    sentinel_id: str = ""
    version: str = ""
    crc32: int = 0
    total_nodes: int = 0
    new_queues: int = 0


class DagManagerClient:
    def __init__(
        self, target: str, *, breaker: AsyncCircuitBreaker | None = None, timeout: float = 30.0
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.breaker = breaker
        self._channel = grpc.aio.insecure_channel(
            target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
        )
        self._stub = pb_grpc.DagManagerStub(self._channel)

    async def _diff(self, request: pb.DiffRequest) -> DiffReply:
        reply = DiffReply()
        stream = self._stub.Diff(request, timeout=self.timeout, metadata=grpc_metadata())
        async for chunk in stream:
            reply.queue_map.update(chunk.queue_map)
            if chunk.final:
                reply.sentinel_id = chunk.sentinel_id
                reply.version = chunk.version
                reply.crc32 = chunk.crc32
                reply.total_nodes = chunk.total_nodes
                reply.new_queues = chunk.new_queues
                reply.buffering = [(b.node_id, b.period, b.interval) for b in chunk.buffering]
        return reply

    async def diff(
        self,
        strategy_id: str,
        dag_json: str,
        *,
        world_id: str = "",
        execution_domain: str = "",
        as_of: str = "",
        partition: str = "",
    ) -> DiffReply:
        request = pb.DiffRequest(
            strategy_id=strategy_id,
            dag_json=dag_json,
            world_id=world_id,
            execution_domain=execution_domain,
            as_of=as_of,
            partition=partition,
        )
        if self.breaker is None:
            return await self._diff(request)
        return await self.breaker.call(self._diff, request)

    async def status(self) -> bool:
        """Health probe; never routed through the breaker, never raises."""
        try:
            reply = await self._stub.Health(pb.HealthRequest(), timeout=2.0)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.ok)

    async def close(self) -> None:
        await self._channel.close()
