"""Gateway core: accept, log, diff, retry; answer ControlBus freezes with ACKs.

A submission is *accepted* once it is parsed and validated.  It is then written to the
durable log, leased to this replica, before anything else; if that write fails the
Gateway cannot promise to finish it, counts it in ``lost_requests_total`` and answers
503 with ``retryable: true`` so the SDK retries.  Logged submissions are diffed through
the DAG Manager client behind the ``dagclient`` breaker:

* the DAG Manager answers -> ``completed`` (200);
* it rejects the input (``InvalidInput``, ``Conflict``: a bad DAG, a cross-context
  violation, a queue-name collision) -> ``rejected`` with the 4xx of that error; never
  retried, never counted against the breaker, never lost;
* it is unavailable (``Unavailable``, open breaker) -> stays ``pending`` (202) and this
  replica retries it; after ``max_attempts`` it is ``abandoned`` and counted lost.

The ports (log, DAG Manager client, ControlBus) are plain objects passed in, so the
core is tested in-process with fakes; ``server.py`` wires the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from qmtl import __version__
from qmtl.foundation.blocking import InlineGate, run_blocking
from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.contracts import DiffResult, SubmissionRequest
from qmtl.foundation.dependencies import DependencyProbes, bounded
from qmtl.foundation.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    QmtlError,
    SubmissionAbandoned,
    SubmissionNotPersisted,
    Unavailable,
    UnknownSubmission,
    WorldFrozen,
    from_code,
)
from qmtl.foundation.loglimit import LogLimiter
from qmtl.foundation.wire import Submitted
from qmtl.services.controlbus import (
    HEARTBEAT,
    ControlBus,
    Envelope,
)
from qmtl.services.gateway import metrics
from qmtl.services.gateway.freezes import Freezes
from qmtl.services.gateway.submissions import Submission

__all__ = ["DiffClient", "GatewayService", "LogPort", "Outcome"]

log = logging.getLogger(__name__)
#: Storage failures after a submission is logged: one line each, at a bounded rate (a
#: full disk fails every write, and the log file may be on that disk too).
_unstored = LogLimiter(log)
T = TypeVar("T")


class DiffClient(Protocol):
    """What the Gateway needs of the DAG Manager (real: ``DagManagerClient``)."""

    breaker: Any

    async def diff(self, request: SubmissionRequest) -> DiffResult: ...

    async def status(self) -> bool: ...

    async def reachable(self) -> bool: ...

    async def close(self) -> None: ...


class LogPort(Protocol):
    """What the Gateway needs of its durable log (real: ``SubmissionLog``)."""

    #: An embedded log (no network to a commit): its calls run on the event loop.
    local: bool
    #: How many calls the log can serve at once (its connection pool).
    concurrency: int

    def insert(self, sub: Submission, owner: str, lease_seconds: float) -> Submission | None: ...

    def get(self, submission_id: str) -> Submission | None: ...

    def latest_for(self, strategy_id: str) -> Submission | None: ...

    def claim(
        self, owner: str, lease_seconds: float, *, grace: float, limit: int = 100
    ) -> list[Submission]: ...

    def complete(self, submission_id: str, result: DiffResult) -> bool: ...

    def reject(self, submission_id: str, code: str, message: str) -> bool: ...

    def abandon(self, submission_id: str, message: str) -> bool: ...

    def retry_later(
        self, submission_id: str, owner: str, message: str, retry_in: float
    ) -> None: ...

    def reclaim_own(self, owner: str) -> int: ...

    def due_now(self, submission_ids: list[str], owner: str) -> int: ...

    def pending(self) -> int: ...

    def ping(self) -> bool: ...

    @property
    def dialect(self) -> str: ...

    def alive(self, owner: str, ttl: float) -> None: ...

    def gone(self, owner: str) -> None: ...

    def counts(self) -> dict[str, int]: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


#: Submissions up to this size are validated and (with a local log) written on the event
#: loop: well under a millisecond.  A larger one (tens of MB at the body limit) would hold
#: the loop for the whole parse or write, so it goes to a thread.
INLINE_BYTES = 64 * 1024


def _small(sub: Submission) -> bool:
    return len(sub.request.dag_json) <= INLINE_BYTES


#: Admin URLs remembered as relayed to the promotion guard; older ones are relayed again.
REGISTERED_KEPT = 10_000


@dataclass
class Outcome:
    """A submission the Gateway took: diffed (``queued`` false) or logged for a retry.
    Everything it refuses is raised as a :class:`~qmtl.foundation.errors.QmtlError`;
    the HTTP adapter decides the status of both."""

    body: dict[str, Any]
    queued: bool = False


class GatewayService:
    def __init__(
        self,
        config: QmtlConfig,
        *,
        log_port: LogPort,
        client: DiffClient,
        bus: ControlBus,
        instance_id: str | None = None,
        register_source: Callable[[SubmissionRequest], Coroutine[Any, Any, None]] | None = None,
        probes: DependencyProbes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.settings = config.gateway
        #: Wall-clock time of freeze deadlines (tests pass a clock they move).
        self.clock = clock
        self.instance_id = (
            instance_id
            or self.settings.instance_id
            or f"gateway-{self.settings.port}-{os.getpid()}"
        )
        self.started_at = time.time()
        metrics.latency_window.window_seconds = self.settings.p95_window_seconds
        self.log = log_port
        self.client = client
        self.breaker = client.breaker
        self.bus = bus
        self.freezes = Freezes(bus, self.instance_id, self.settings.max_freeze_seconds, clock)
        self.bus.subscribe(self.freezes.on_event)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        # A local SQLite log is written on the loop for rows of ordinary size (see
        # ``INLINE_BYTES``; scans and status reads keep the thread): a WAL commit
        # without fsync costs tens of microseconds, less than a thread hop; the WAL
        # checkpoint (with its fsync) runs on the database's own checkpointer thread, not
        # in a commit.  A networked log (PostgreSQL) gets a thread per pooled connection,
        # so a slow server never stalls the event loop, and one slow or hung call does
        # not hold up every other submission behind it.
        self._log_inline = bool(log_port.local)
        self._log_gate = InlineGate()
        self._db_pool = ThreadPoolExecutor(
            max(1, int(log_port.concurrency)), thread_name_prefix="gateway-log"
        )
        #: Tells the WorldService's promotion guard about an SDK process that submitted.
        self._register_source = register_source
        #: Admin URLs relayed lately (insertion-ordered, bounded): each is relayed once.
        self._registered: dict[str, None] = {}
        self._background: set[asyncio.Task[None]] = set()
        #: Pending submissions in the log at the retry loop's last look, plus those queued
        #: since: admission refuses new work while it is over gateway.max_pending_submissions.
        self.backlog = 0
        #: Rows whose retry could not be recorded (the log refused the write): made due
        #: as soon as the log takes writes again, instead of after their lease.
        self._unrecorded: set[str] = set()
        self.probes = probes or DependencyProbes()
        self.probes.add("submission_log", log_port.dialect, log_port.ping)
        self.probes.add("dagmanager", "grpc", client.reachable)
        bus_probe = getattr(bus, "probe", None)
        if bus_probe is not None:
            kind = "kafka" if config.controlbus.backend == "kafka" else "http"
            name = "controlbus" if kind == "kafka" else "worldservice"
            self.probes.add(name, kind, bus_probe)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self._renew_liveness()
        reclaimed = await self._db(self.log.reclaim_own, self.instance_id, small=True)
        if reclaimed:
            log.info("reclaimed %d pending submissions of this replica after a restart", reclaimed)
        self.bus.start()
        self._tasks = [
            asyncio.create_task(self._probe_loop()),
            asyncio.create_task(self._retry_loop()),
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(self._liveness_loop()),
        ]
        self.probes.start()

    async def stop(self) -> None:
        await self.probes.stop()
        # Loops and registrations still in flight stop with the service: a registration
        # cut short is sent again when the strategy next submits to a Gateway that has
        # not registered it (any Gateway started after this one).
        pending = [*self._tasks, *self._background]
        for task in pending:
            task.cancel()
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("a background task had failed: %s", outcome)
        self.bus.close()
        await self.client.close()
        try:
            await self._db(self.log.gone, self.instance_id)
        except Exception as exc:  # the lease lapses by itself
            log.warning("liveness lease not released: %s", exc)
        self._db_pool.shutdown(wait=True)
        self.log.close()

    async def _db(self, fn: Any, *args: Any, small: bool = False, **kwargs: Any) -> Any:
        """Call the log; on the loop when it is local, the call moves little data and the
        log is free -- another thread's transaction (a retry-loop scan, a status read)
        sends the call to a log thread rather than holding the loop until it ends.
        Each log call is one transaction, or a second one read only after a first that
        wrote nothing, so a call refused on the loop is safe to run again."""
        inline = self._log_inline and small
        return await run_blocking(
            fn, *args, inline=inline, executor=self._db_pool, gate=self._log_gate, **kwargs
        )

    # -- submissions -------------------------------------------------------------------------
    async def submit(self, request: SubmissionRequest) -> Outcome:
        world = request.world_id
        if world and self.freezes.until(world) is not None:
            raise WorldFrozen(f"world {world} is frozen by an apply run; retry shortly")
        sid = request.submission_id()
        sub = Submission(sid, request, "pending")
        try:
            existing = await self._db(
                self.log.insert,
                sub,
                self.instance_id,
                self.settings.lease_seconds,
                small=_small(sub),
            )
        except Exception as exc:
            metrics.lost_requests_total.inc()
            log.error(
                "lost request strategy_id=%s submission_id=%s cause=%s", sub.strategy_id, sid, exc
            )
            raise SubmissionNotPersisted(
                f"the submission log refused the write ({exc}); retry", submission_id=sid
            ) from None
        if existing is not None:
            return self._outcome_of(existing, duplicate=True)
        self._note_source(request)
        return await self._process(sub)

    def _note_source(self, request: SubmissionRequest) -> None:
        if not request.admin_url or self._register_source is None:
            return
        if request.admin_url in self._registered:
            return
        self._registered[request.admin_url] = None
        if len(self._registered) > REGISTERED_KEPT:
            del self._registered[next(iter(self._registered))]
        task = asyncio.create_task(self._register_source(request))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _process(self, sub: Submission) -> Outcome:
        sid = sub.submission_id
        try:
            result = await self.client.diff(sub.request)
        except (InvalidInput, Conflict, NotFound) as exc:
            await self._record(self.log.reject, sid, exc.code, exc.message)
            exc.details["submission_id"] = sid
            raise
        except Unavailable as exc:
            return await self._retry_later(sub, exc.message)
        except QmtlError as exc:  # e.g. auth between Gateway and DAG Manager: an outage here
            return await self._retry_later(sub, f"{exc.code}: {exc.message}")
        except Exception as exc:
            log.exception("diff of submission %s failed unexpectedly", sid)
            return await self._retry_later(sub, f"{type(exc).__name__}: {exc}")
        try:
            stored = await self._db(self.log.complete, sid, result, small=_small(sub))
            if not stored:  # another replica finished it first: answer with the stored result
                existing = await self._db(self.log.get, sid, small=_small(sub))
                if existing is not None:
                    return self._outcome_of(existing, duplicate=True)
        except Exception as exc:
            # The result is in hand but not stored (a full disk, a lost database): the row
            # stays pending in the log and a retry stores it once the log takes writes.
            _unstored.log("submission %s: result not stored: %s", sid, exc)
            return await self._retry_later(sub, f"the result could not be stored ({exc})")
        return Outcome(Submitted(sid, sub.strategy_id, result).to_dict())

    async def _record(self, fn: Any, *args: Any) -> bool:
        """A state change the next retry would make again: a failure to store it is logged
        (at a bounded rate) and the answer goes out regardless."""
        try:
            await self._db(fn, *args, small=True)
        except Exception as exc:
            _unstored.log("submission %s: state not stored: %s", args[0], exc)
            return False
        return True

    async def _retry_later(self, sub: Submission, reason: str) -> Outcome:
        recorded = await self._record(
            self.log.retry_later, sub.submission_id, self.instance_id, reason,
            self.settings.retry_interval_seconds,
        )  # fmt: skip
        if not recorded:
            self._unrecorded.add(sub.submission_id)
        self.backlog += 1
        self._wake.set()
        return self._queued(sub, reason)

    def _queued(self, sub: Submission, reason: str) -> Outcome:
        return Outcome({"status": "queued", "submission_id": sub.submission_id,
                        "strategy_id": sub.strategy_id,
                        "message": f"{reason}; the submission is logged and will be retried"},
                       queued=True)  # fmt: skip

    def _outcome_of(self, sub: Submission, *, duplicate: bool) -> Outcome:
        extra = {"submission_id": sub.submission_id, "duplicate": duplicate}
        if sub.status == "completed" and sub.result is not None:
            return Outcome(
                Submitted(
                    sub.submission_id, sub.strategy_id, sub.result, duplicate=duplicate
                ).to_dict()
            )
        if sub.status == "rejected":
            exc = from_code(sub.error_code or "invalid_request", sub.error or "", InvalidInput)
            exc.details.update(extra)
            raise exc
        if sub.status == "abandoned":
            raise SubmissionAbandoned(
                f"gave up after {sub.attempts} attempts: {sub.error}", **extra
            )
        return Outcome({**sub.as_dict(), **extra}, queued=True)

    async def submission(self, submission_id: str) -> Submission:
        found = await self._db(self.log.get, submission_id)
        if found is None:
            raise UnknownSubmission(f"no submission {submission_id!r}")
        return found  # type: ignore[no-any-return]

    async def latest(self, strategy_id: str) -> Submission | None:
        return await self._db(self.log.latest_for, strategy_id)  # type: ignore[no-any-return]

    async def retry_due(self) -> int:
        """One pass of the retry loop: claim due submissions and work them off."""
        try:
            self.backlog = await self._db(self.log.pending)
            if self._unrecorded:
                stalled = sorted(self._unrecorded)
                await self._db(self.log.due_now, stalled, self.instance_id)
                self._unrecorded.difference_update(stalled)
        except Exception as exc:
            log.warning("retry loop: cannot read the submission log: %s", exc)
        if self.breaker.is_open:
            return 0
        try:
            due = await self._db(
                self.log.claim, self.instance_id, self.settings.lease_seconds,
                grace=self.settings.claim_grace_seconds,
            )  # fmt: skip
        except Exception as exc:
            log.warning("retry loop: cannot read the submission log: %s", exc)
            return 0
        for sub in due:
            if self.breaker.is_open:
                await self._retry_later(sub, "the DAG Manager circuit breaker is open")
                continue
            if sub.attempts >= self.settings.max_attempts:
                if not await self._record(self.log.abandon, sub.submission_id, "too many attempts"):
                    continue
                metrics.lost_requests_total.inc()
                log.error("lost request strategy_id=%s submission_id=%s cause=abandoned after %d attempts",
                          sub.strategy_id, sub.submission_id, sub.attempts)  # fmt: skip
                continue
            try:
                outcome = await self._process(sub)
            except QmtlError as exc:  # refused for good: stored as rejected by _process
                log.info("retried submission %s: rejected (%s)", sub.submission_id, exc.code)
                continue
            log.info("retried submission %s: %s", sub.submission_id, outcome.body["status"])
        return len(due)

    async def _retry_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self.settings.retry_interval_seconds
                )
            self._wake.clear()
            try:
                await self.retry_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a pass that failed must not end the loop
                _unstored.log("retry loop: pass failed: %s", exc)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.breaker_probe_seconds)
            if self.breaker.is_open and await self.client.status():
                self.breaker.reset()
                self._wake.set()
            self.freezes.expire()

    async def _renew_liveness(self) -> None:
        try:
            await self._db(
                self.log.alive, self.instance_id, self.settings.replica_liveness_seconds, small=True
            )
        except Exception as exc:  # others may take our rows over: harmless, answers match
            log.warning("liveness lease not renewed: %s", exc)

    async def _liveness_loop(self) -> None:
        """Say this replica is alive: its in-flight rows stay its own until it is not."""
        while True:
            await asyncio.sleep(self.settings.replica_liveness_seconds / 3)
            await self._renew_liveness()

    async def _heartbeat_loop(self) -> None:
        """Tell WorldServices this replica is subscribed (it waits for our ACKs)."""
        while True:
            if self.bus.healthy():
                beat = Envelope(type=HEARTBEAT, source="qmtl/gateway", subject=self.instance_id,
                                data={"gateway_id": self.instance_id})  # fmt: skip
                try:
                    await run_blocking(self.bus.publish, beat)
                except ConnectionError as exc:
                    log.warning("controlbus heartbeat failed: %s", exc)
            await asyncio.sleep(self.settings.heartbeat_seconds)

    async def status(self) -> dict[str, Any]:
        """The replica's state; never waits on a backend longer than the probe deadline
        (``dependencies`` says which one is slow)."""
        deadline = self.probes.deadline
        counts = await bounded(lambda: self.log.counts(), deadline, "submission log")
        dependencies = self.probes.report()
        frozen = self.freezes.remaining()
        return {
            "service": "gateway",
            "version": __version__,
            "instance": self.instance_id,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "dependencies": dependencies,
            "dagmanager": {
                "target": self.settings.dagmanager_grpc,
                "reachable": bool((dependencies.get("dagmanager") or {}).get("ok")),
            },
            "breaker": self.breaker.describe(),
            "submissions": counts,
            "submission_log": {
                "backend": self.log.describe(),
                "ok": "error" not in counts
                and (dependencies.get("submission_log") or {}).get("ok") is not False,
            },
            "controlbus": {
                "backend": self.config.controlbus.backend,
                "ready": self.bus.healthy(),
                "invalid_events": self.bus.invalid,
            },
            "frozen_worlds": frozen,
        }
