"""Gateway core: accept, log, diff, retry; answer ControlBus freezes with ACKs.

A submission is *accepted* once it is parsed and validated.  It is then written to the
durable log before anything else; if that write fails the Gateway cannot promise to
finish it, counts it in ``lost_requests_total`` and answers 503 with
``retryable: true`` so the SDK retries.  Logged submissions are diffed through the DAG
Manager client behind the ``dagclient`` breaker; while the DAG Manager is unavailable
they stay ``pending`` and a background loop retries them (never dropped).  A
submission that still fails after ``max_attempts`` is ``abandoned`` and counted lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc

from qmtl import __version__
from qmtl.foundation.common import AsyncCircuitBreaker, CircuitOpenError
from qmtl.foundation.config import QmtlConfig
from qmtl.services.controlbus import ACK, FREEZE, UNFREEZE, Envelope, open_bus
from qmtl.services.dagmanager.client import DagManagerClient, is_remote_failure
from qmtl.services.gateway import metrics
from qmtl.services.gateway.submissions import Submission, SubmissionLog

__all__ = ["GatewayService", "Outcome", "submission_id_for"]

log = logging.getLogger(__name__)
BREAKER_THRESHOLD = 3


def submission_id_for(request: dict[str, Any]) -> str:
    """Idempotency key: the same strategy, DAG and context is the same submission."""
    parts = [
        request.get(k, "")
        for k in ("strategy_id", "world_id", "execution_domain", "as_of", "partition")
    ]
    digest = hashlib.sha256("\x1f".join([*parts, request["dag_json"]]).encode()).hexdigest()
    return digest[:32]


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]


class GatewayService:
    def __init__(self, config: QmtlConfig) -> None:
        self.config = config
        self.gw = config.gateway
        self.started_at = time.time()
        metrics.latency_window.window_seconds = self.gw.p95_window_seconds
        self.log = SubmissionLog(self.gw.submission_log)
        self.breaker = AsyncCircuitBreaker(
            BREAKER_THRESHOLD,
            name="dagclient",
            is_failure=is_remote_failure,
            on_open=lambda: log.error("dagclient breaker opened: DAG Manager unavailable"),
            on_close=lambda: log.info("dagclient breaker closed after a healthy probe"),
        )
        self.client: DagManagerClient | None = None
        self.bus = open_bus(config.controlbus, role="gateway")
        self.bus.subscribe(self._on_control)
        self.frozen: dict[str, float] = {}
        self.ack_delay_ms = 0.0  # fault injection: slow ACKs
        self.submission_delay_ms = 0.0  # fault injection: slow submissions
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.client = DagManagerClient(self.gw.dagmanager_grpc, breaker=self.breaker, timeout=30)
        self.bus.start()
        self._tasks = [
            asyncio.create_task(self._probe_loop()),
            asyncio.create_task(self._retry_loop()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.bus.close()
        if self.client is not None:
            await self.client.close()
        self.log.close()

    # -- submissions -------------------------------------------------------------------------
    async def submit(self, request: dict[str, Any]) -> Outcome:
        if self.submission_delay_ms:
            await asyncio.sleep(self.submission_delay_ms / 1000)
        world = request.get("world_id", "")
        if world and world in self.frozen:
            return Outcome(409, {"error": "world_frozen", "retryable": True,
                                 "message": f"world {world} is frozen by an apply run; retry shortly"})  # fmt: skip
        sid = submission_id_for(request)
        sub = Submission(sid, request["strategy_id"], request, "pending")
        try:
            existing = await self._db(self.log.insert, sub)
        except Exception as exc:
            metrics.lost_requests_total.inc()
            log.error(
                "lost request strategy_id=%s submission_id=%s cause=%s", sub.strategy_id, sid, exc
            )
            return Outcome(503, {"error": "submission_not_persisted", "retryable": True,
                                 "message": f"the submission log refused the write ({exc}); retry"})  # fmt: skip
        if existing is not None:
            return self._outcome_of(existing, duplicate=True)
        return await self._process(sub)

    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """SQLite calls take ~0.1 ms: run them inline.  PostgreSQL round trips go to a
        worker thread so a slow database never stalls the event loop."""
        if self.log.db.dialect == "sqlite":
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _process(self, sub: Submission) -> Outcome:
        assert self.client is not None
        req = sub.request
        try:
            reply = await self.client.diff(
                req["strategy_id"], req["dag_json"], world_id=req.get("world_id", ""),
                execution_domain=req.get("execution_domain", ""), as_of=req.get("as_of", ""),
                partition=req.get("partition", ""),
            )  # fmt: skip
        except CircuitOpenError:
            await self._db(self.log.update, sub.submission_id, "pending", attempt=True)
            return self._queued(sub, "the DAG Manager circuit breaker is open")
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                await self._db(
                    self.log.update,
                    sub.submission_id,
                    "rejected",
                    error=exc.details(),
                    attempt=True,
                )
                return Outcome(
                    422,
                    {
                        "error": "invalid_dag",
                        "message": exc.details(),
                        "submission_id": sub.submission_id,
                    },
                )
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                await self._db(
                    self.log.update,
                    sub.submission_id,
                    "rejected",
                    error=exc.details(),
                    attempt=True,
                )
                return Outcome(409, {"error": "cross_context_violation", "message": exc.details(),
                                     "submission_id": sub.submission_id})  # fmt: skip
            await self._db(
                self.log.update, sub.submission_id, "pending", error=exc.details(), attempt=True
            )
            return self._queued(sub, f"DAG Manager unavailable: {exc.code().name}: {exc.details()}")
        result = {
            "strategy_id": req["strategy_id"],
            "queue_map": reply.queue_map,
            "sentinel_id": reply.sentinel_id,
            "version": reply.version,
            "crc32": reply.crc32,
            "new_queues": reply.new_queues,
            "buffering": [
                {"node_id": n, "period": p, "interval": i} for n, p, i in reply.buffering
            ],
        }
        await self._db(self.log.update, sub.submission_id, "completed", result=result, attempt=True)
        return Outcome(200, {**result, "submission_id": sub.submission_id, "status": "completed"})

    def _queued(self, sub: Submission, reason: str) -> Outcome:
        self._wake.set()
        return Outcome(202, {"status": "queued", "submission_id": sub.submission_id, "strategy_id": sub.strategy_id,
                             "message": f"{reason}; the submission is logged and will be retried"})  # fmt: skip

    def _outcome_of(self, sub: Submission, *, duplicate: bool) -> Outcome:
        if sub.status == "completed" and sub.result:
            return Outcome(200, {**sub.result, "submission_id": sub.submission_id, "status": "completed",
                                 "duplicate": duplicate})  # fmt: skip
        if sub.status == "rejected":
            return Outcome(422, {"error": "rejected", "message": sub.error, "submission_id": sub.submission_id,
                                 "duplicate": duplicate})  # fmt: skip
        return Outcome(202, {**sub.as_dict(), "duplicate": duplicate})

    async def _retry_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.gw.retry_interval_seconds)
            self._wake.clear()
            if self.breaker.is_open:
                continue
            try:
                pending = await self._db(self.log.pending, 100)
            except Exception as exc:
                log.warning("retry loop: cannot read the submission log: %s", exc)
                continue
            for sub in pending:
                if self.breaker.is_open:
                    break
                if sub.attempts >= self.gw.max_attempts:
                    await self._db(
                        self.log.update, sub.submission_id, "abandoned", error="too many attempts"
                    )
                    metrics.lost_requests_total.inc()
                    log.error("lost request strategy_id=%s submission_id=%s cause=abandoned after %d attempts",
                              sub.strategy_id, sub.submission_id, sub.attempts)  # fmt: skip
                    continue
                outcome = await self._process(sub)
                log.info(
                    "retried submission %s: %s",
                    sub.submission_id,
                    outcome.body.get("status", outcome.status),
                )

    async def _probe_loop(self) -> None:
        assert self.client is not None
        while True:
            await asyncio.sleep(self.gw.breaker_probe_seconds)
            if self.breaker.is_open and await self.client.status():
                self.breaker.reset()
                self._wake.set()

    # -- ControlBus --------------------------------------------------------------------------
    def _on_control(self, envelope: Envelope) -> None:
        if envelope.type not in (FREEZE, UNFREEZE):
            return
        world = str(envelope.data.get("world_id", envelope.subject))
        phase = "freeze" if envelope.type == FREEZE else "unfreeze"
        if phase == "freeze":
            self.frozen[world] = time.time()
        else:
            self.frozen.pop(world, None)
        if self.ack_delay_ms:
            time.sleep(self.ack_delay_ms / 1000)
        latency = max(0.0, (time.time() - envelope.epoch()) * 1000.0)
        ack = Envelope(
            type=ACK, source="qmtl/gateway", subject=world,
            data={"world_id": world, "phase": phase, "correlation_id": envelope.id,
                  "run_id": envelope.data.get("run_id"), "latency_ms": latency},
        )  # fmt: skip
        try:
            self.bus.publish(ack)
        except ConnectionError as exc:
            log.error("cannot ACK %s for world %s: %s", phase, world, exc)
            return
        metrics.controlbus_apply_ack_total.labels(world, phase).inc()
        metrics.controlbus_apply_ack_latency_ms.labels(world, phase).set(latency)
        metrics.controlbus_apply_ack_latency_ms_hist.labels(phase).observe(latency)

    async def status(self) -> dict[str, Any]:
        reachable = await self.client.status() if self.client else False
        counts = await self._db(self.log.counts)
        return {
            "service": "gateway",
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "dagmanager": {"target": self.gw.dagmanager_grpc, "reachable": reachable},
            "breaker": self.breaker.describe(),
            "submissions": counts,
            "submission_log": self.log.db.describe(),
            "controlbus": {
                "backend": self.config.controlbus.backend,
                "ready": self.bus.ready.is_set(),
            },
            "frozen_worlds": sorted(self.frozen),
            "faults": {
                "log_write_fail": self.log.fail_writes,
                "ack_delay_ms": self.ack_delay_ms,
                "submission_delay_ms": self.submission_delay_ms,
            },
        }
