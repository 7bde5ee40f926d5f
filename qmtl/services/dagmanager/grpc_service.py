"""gRPC front of the DAG Manager: Diff (server-streaming), DiffUnary and Health.

``Diff`` streams the queue map in chunks (:mod:`~qmtl.services.dagmanager.proto_codec`); ``DiffUnary``
answers the same diff in one message (the Gateway's call: a unary call costs about half
the CPU of a stream on each end).  Both run one code path and fail the same way.

Domain errors map to gRPC status codes in :mod:`~qmtl.services.dagmanager.grpc_errors`; the error's
``code`` travels in the ``qmtl-error-code`` trailer so clients rebuild the exact
domain class.  Client input is never answered UNKNOWN: requests arrive as bytes
(:func:`register`), so a caller is authenticated before any parsing work and a message
that is not a ``DiffRequest`` is INVALID_ARGUMENT with one log line, at a bounded rate;
anything unexpected becomes INTERNAL with a one-line message (the traceback goes to the
log).

The event loop that also serves ``/metrics`` and ``/health`` never waits on a store, a
broker or a drill delay.  Diffs run in worker threads, except a small DAG on embedded
backends (every port it touches says it is ``local``: the SQLite store and in-process
queues, not their drill wrappers): that one runs on the loop, where
the thread hop and GIL hand-offs would cost half as much again as the diff itself,
and only while the store is free
(:func:`~qmtl.foundation.sqldb.without_waiting`); a busy store sends it to a thread.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc
from google.protobuf.message import DecodeError

from qmtl.foundation.access import check_bearer
from qmtl.foundation.blocking import InlineGate, run_blocking
from qmtl.foundation.contracts import DiffResult, SubmissionRequest
from qmtl.foundation.errors import (
    InvalidRequest,
    QmtlError,
)
from qmtl.foundation.loglimit import LogLimiter
from qmtl.foundation.tracing import context_from_grpc_metadata, get_tracer
from qmtl.services.dagmanager.grpc_errors import ERROR_TRAILER, grpc_status
from qmtl.services.dagmanager.proto import dagmanager_pb2 as pb
from qmtl.services.dagmanager.proto import dagmanager_pb2_grpc as pb_grpc
from qmtl.services.dagmanager.proto_codec import request_from_proto, result_chunks
from qmtl.services.dagmanager.service import DagManagerService

__all__ = ["INLINE_DIFF_BYTES", "DagManagerServicer", "register"]

log = logging.getLogger(__name__)
_malformed = LogLimiter(log)
_tracer = get_tracer("qmtl.dagmanager")


#: DAGs up to this size may be diffed on the event loop (a 20-node DAG is ~5 KB).
INLINE_DIFF_BYTES = 64 * 1024


class DagManagerServicer(pb_grpc.DagManagerServicer):
    def __init__(
        self, service: DagManagerService, *, token: str | None = None, exposed: bool = False
    ) -> None:
        self.service = service
        self.token = token
        self.exposed = exposed
        #: Whether nothing a small diff touches can make the loop wait (see the module doc).
        self.inline = bool(service.store.local and service.queues.local)
        self._gate = InlineGate()

    async def _diff(self, submission: SubmissionRequest) -> DiffResult:
        # Refused on the loop (the store was busy), the diff runs again in a thread: what
        # it did before the refusal (a lookup, idempotent topic creation) bears repeating.
        inline = self.inline and len(submission.dag_json) <= INLINE_DIFF_BYTES
        return await run_blocking(
            self.service.engine.diff, submission, inline=inline, gate=self._gate
        )

    async def _fail(self, context: grpc.aio.ServicerContext, exc: QmtlError) -> NoReturn:
        """Abort the call (``abort`` raises) with the error's code in the trailer."""
        context.set_trailing_metadata(((ERROR_TRAILER, exc.code),))
        await context.abort(grpc_status(exc), exc.message)
        raise AssertionError("grpc's abort returned")  # it raises; its stub says None

    def _authorize(self, context: grpc.aio.ServicerContext, what: str) -> None:
        if not (self.token or self.exposed):
            return
        metadata = dict(context.invocation_metadata() or ())
        supplied = metadata.get("authorization")
        check_bearer(
            supplied if isinstance(supplied, str) else None,
            self.token,
            exposed=self.exposed,
            what=what,
        )

    def _parse(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.DiffRequest:
        try:
            return pb.DiffRequest.FromString(raw)
        except DecodeError as exc:
            peer = context.peer() or "unknown peer"
            _malformed.log("malformed DiffRequest from %s: %s", peer, exc)
            raise InvalidRequest(
                f"the request is not a qmtl.dagmanager.v1.DiffRequest message ({exc})"
            ) from None

    async def _answer(self, raw: bytes, context: grpc.aio.ServicerContext, rpc: str) -> DiffResult:
        """Authenticate, parse and diff ``raw`` for either RPC; a failure aborts the call
        with its trailer.  One span name for both RPCs (``dagmanager.Diff``): traces are
        searched by what was done, the RPC is an attribute."""
        parent = context_from_grpc_metadata(context.invocation_metadata())
        with _tracer.start_as_current_span("dagmanager.Diff", context=parent) as span:
            span.set_attribute("rpc.method", rpc)
            try:
                self._authorize(context, rpc)
                request = self._parse(raw, context)
                span.set_attribute("qmtl.strategy_id", request.strategy_id)
                submission = request_from_proto(request)
                result = await self._diff(submission)
            except QmtlError as exc:
                span.set_attribute("qmtl.error", exc.code)
                await self._fail(context, exc)
            except Exception as exc:
                log.exception("diff failed unexpectedly")
                span.set_attribute("qmtl.error", "internal")
                await self._fail(context, QmtlError(f"internal error: {type(exc).__name__}: {exc}"))
            span.set_attribute("qmtl.nodes", result.total_nodes)
            return result

    async def Diff(
        self, raw: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DiffChunk]:
        result = await self._answer(raw, context, "Diff")
        for chunk in result_chunks(result):
            yield chunk

    async def DiffUnary(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.DiffChunk:
        result = await self._answer(raw, context, "DiffUnary")
        return result_chunks(result, chunk_size=max(1, len(result.queue_map)))[0]

    async def Health(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.HealthReply:
        """From the service's dependency checks, at once: a hung store makes the reply
        ``ok=false``, never a Health call that hangs (a caller could not tell a stuck DAG
        Manager from a stuck database).  Nothing is read from the request."""
        report = self.service.probes.report()
        down = sorted(name for name, entry in report.items() if entry["ok"] is False)
        detail = "; ".join(f"{n}: {report[n].get('error', 'down')}" for n in down) or "ok"
        return pb.HealthReply(ok=not down, detail=detail)


def _raw(data: bytes) -> bytes:
    return data


def register(servicer: DagManagerServicer, server: grpc.aio.Server) -> None:
    """Serve ``servicer`` on ``server`` with requests delivered as bytes.

    The generated registration parses each request before the handler runs: a malformed
    one failed inside gRPC (UNKNOWN, an ERROR line and a traceback), before anyone was
    authenticated.  The method names and messages are those of the generated code.
    """
    service = "qmtl.dagmanager.v1.DagManager"
    handlers = {
        "Diff": grpc.unary_stream_rpc_method_handler(
            servicer.Diff, request_deserializer=_raw,
            response_serializer=pb.DiffChunk.SerializeToString,
        ),
        "DiffUnary": grpc.unary_unary_rpc_method_handler(
            servicer.DiffUnary, request_deserializer=_raw,
            response_serializer=pb.DiffChunk.SerializeToString,
        ),
        "Health": grpc.unary_unary_rpc_method_handler(
            servicer.Health, request_deserializer=_raw,
            response_serializer=pb.HealthReply.SerializeToString,
        ),
    }  # fmt: skip
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
