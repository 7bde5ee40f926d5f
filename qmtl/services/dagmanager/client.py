"""Async gRPC client of the DAG Manager (used by the Gateway, the demo, tests, benchmarks).

``diff`` calls ``DiffUnary`` (the whole queue map in one reply: half the CPU of the
``Diff`` stream; a server that predates it gets the stream) through :attr:`breaker` --
every client has one, the ``dagclient`` breaker (three consecutive failures) -- and
``status`` never does, so a health check can close an open breaker::

    if await client.status():
        client.breaker.reset()

Failures come back as the domain errors of :mod:`qmtl.foundation.errors`, rebuilt from
the server's ``qmtl-error-code`` trailer: a rejected DAG is ``InvalidDag``, a queue-name
collision ``QueueNameCollision`` -- the caller's problem, never counted by the breaker;
transport failures and server outages are ``Unavailable`` and are counted.

Importing this module does not register DAG Manager metrics.
"""

from __future__ import annotations

import logging

import grpc

from qmtl.foundation.breaker import BREAKER_THRESHOLD, AsyncCircuitBreaker
from qmtl.foundation.contracts import DiffResult, SubmissionRequest
from qmtl.foundation.errors import (
    QmtlError,
    Unavailable,
)
from qmtl.foundation.tracing import grpc_metadata
from qmtl.services.dagmanager.grpc_errors import domain_error
from qmtl.services.dagmanager.proto import dagmanager_pb2 as pb
from qmtl.services.dagmanager.proto import dagmanager_pb2_grpc as pb_grpc
from qmtl.services.dagmanager.proto_codec import request_to_proto, result_from_chunks

__all__ = ["DagManagerClient", "is_remote_failure"]

log = logging.getLogger(__name__)

#: The largest DAG the client sends (a DiffRequest); replies may be up to twice that.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def is_remote_failure(exc: BaseException) -> bool:
    """Breaker filter: outages count; rejected input, conflicts and auth errors do not."""
    return not isinstance(exc, QmtlError) or isinstance(exc, Unavailable)


#: gRPC waits up to 120 s between attempts to reach an unreachable server; a DAG Manager
#: back from a restart (a rollout, a failover) would go unused for that long.  Capped so
#: a Gateway retries every few seconds, as often as its dependency probe looks.
RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 3000),
)


class DagManagerClient:
    def __init__(
        self,
        target: str,
        *,
        breaker: AsyncCircuitBreaker | None = None,
        timeout: float = 30.0,
        token: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.breaker = breaker or AsyncCircuitBreaker(
            BREAKER_THRESHOLD, name="dagclient", is_failure=is_remote_failure
        )
        self._auth: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # The whole queue map comes in one reply; an entry (node id, queue name
                # made of the node's own fields) is about as long as the node in the DAG.
                ("grpc.max_receive_message_length", 2 * MAX_MESSAGE_BYTES),
                *RECONNECT_OPTIONS,
            ],
        )
        self._stub = pb_grpc.DagManagerStub(self._channel)  # type: ignore[no-untyped-call]
        #: False once the server answered UNIMPLEMENTED to DiffUnary (it predates it).
        self._unary = True

    async def _diff(self, request: pb.DiffRequest) -> DiffResult:
        metadata = (*grpc_metadata(), *self._auth)
        try:
            if self._unary:
                try:
                    final = await self._stub.DiffUnary(
                        request, timeout=self.timeout, metadata=metadata
                    )
                    return result_from_chunks((final,))
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                        raise
                    # A DAG Manager older than DiffUnary (a rolling upgrade that reached
                    # the Gateways first): use the stream from now on.
                    log.warning("DAG Manager at %s has no DiffUnary; using the Diff stream",
                                self.target)  # fmt: skip
                    self._unary = False
            chunks = [
                chunk
                async for chunk in self._stub.Diff(request, timeout=self.timeout, metadata=metadata)
            ]
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc) from None
        return result_from_chunks(chunks)

    async def diff(self, request: SubmissionRequest) -> DiffResult:
        """Diff ``request`` through the breaker; raises domain errors."""
        return await self.breaker.call(self._diff, request_to_proto(request))

    async def status(self) -> bool:
        """Health probe; never routed through the breaker, never raises."""
        try:
            reply = await self._stub.Health(pb.HealthRequest(), timeout=2.0, metadata=self._auth)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.ok)

    async def reachable(self) -> bool:
        """Whether the DAG Manager answers at all (its own backends aside): the Gateway's
        dependency check.  Raises on no answer, so the check can say why."""
        await self._stub.Health(pb.HealthRequest(), timeout=2.0, metadata=self._auth)
        return True

    async def close(self) -> None:
        await self._channel.close()
