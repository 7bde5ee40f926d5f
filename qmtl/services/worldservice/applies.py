"""Apply runs: freeze -> switch -> unfreeze over the ControlBus, one per world at a time.

Freeze and unfreeze are published on the ControlBus and need an ACK from every live
Gateway (Gateways announce themselves with heartbeats) within ``ack_timeout_seconds``;
the switch updates the world's active strategies.  The stage that fails labels
``world_apply_failure_total``; a failed run still tries to unfreeze so Gateways are not
left frozen, and every freeze carries a deadline after which Gateways unfreeze by
themselves should the WorldService die.

Replicas share the store: one apply run per world at a time, across replicas, through
the ``apply:<world>`` lease; a run whose replica died (lease expired, run still
``running``) is finished as a failure of its stage, with a rollback unfreeze, by the
next replica that starts or sweeps.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qmtl.foundation.config import WorldServiceConfig
from qmtl.foundation.errors import ApplyInProgress, UnknownRun
from qmtl.foundation.metrics import BoundedSeries
from qmtl.services.controlbus import ACK, FREEZE, HEARTBEAT, UNFREEZE, ControlBus, Envelope
from qmtl.services.worldservice import metrics
from qmtl.services.worldservice.models import ApplyPlan, ApplyRun, World
from qmtl.services.worldservice.store import WorldStore

__all__ = ["STAGES", "ApplyError", "ApplyRuns"]

log = logging.getLogger(__name__)
STAGES = ("freeze", "switch", "unfreeze")


class ApplyError(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


@dataclass
class _Pending:
    expected: set[str]
    acks: dict[str, Envelope] = field(default_factory=dict)
    event: threading.Event = field(default_factory=threading.Event)
    received_at: float = 0.0


class ApplyRuns:
    """Runs of every world this replica applies, and the Gateways it waits for."""

    def __init__(
        self, settings: WorldServiceConfig, *, store: WorldStore, bus: ControlBus,
        instance_id: str, stop: threading.Event,
        require_world: Callable[[str], World], guard_check: Callable[[str], object],
    ) -> None:  # fmt: skip
        self.settings = settings
        self.store = store
        self.bus = bus
        self.instance_id = instance_id
        self._stop = stop
        self.require_world = require_world
        #: The promotion guard's verdict for a world; raises when it may not be applied.
        self.guard_check = guard_check
        self._pending: dict[str, _Pending] = {}
        self._gateways: dict[str, float] = {}
        self._lock = threading.Lock()
        self._series = BoundedSeries(settings.runs_kept_per_world)

    # -- Gateways and ACKs ----------------------------------------------------------------------
    def on_event(self, envelope: Envelope) -> None:
        if envelope.type == HEARTBEAT:
            with self._lock:
                self._gateways[envelope.data["gateway_id"]] = time.time()
            return
        if envelope.type != ACK:
            return
        gateway = str(envelope.data.get("gateway_id") or envelope.source)
        with self._lock:
            pending = self._pending.get(envelope.data["correlation_id"])
            if pending is None:
                return
            pending.acks[gateway] = envelope
            self._gateways[gateway] = time.time()
            if pending.expected <= set(pending.acks) or not pending.expected:
                pending.received_at = time.time()
                pending.event.set()

    def live_gateways(self) -> set[str]:
        horizon = time.time() - self.settings.gateway_liveness_seconds
        with self._lock:
            return {g for g, seen in self._gateways.items() if seen >= horizon}

    def _await_gateways(self, stage: str) -> set[str]:
        deadline = time.monotonic() + self.settings.ack_timeout_seconds
        while True:
            live = self.live_gateways()
            if live:
                return live
            if time.monotonic() >= deadline:
                raise ApplyError(
                    stage,
                    "no Gateway is subscribed to the ControlBus (no heartbeat within "
                    f"{self.settings.ack_timeout_seconds:g}s); start a Gateway or check controlbus settings",
                )
            self._stop.wait(0.1)

    def _phase(self, world_id: str, run_id: str, event_type: str, stage: str) -> float:
        expected = self._await_gateways(stage)
        envelope = Envelope(
            type=event_type, source="qmtl/worldservice", subject=world_id,
            data={"world_id": world_id, "run_id": run_id, "phase": stage,
                  "deadline": time.time() + self.settings.freeze_deadline},
        )  # fmt: skip
        pending = _Pending(expected=set(expected))
        with self._lock:
            self._pending[envelope.id] = pending
        sent = time.time()
        try:
            self.bus.publish(envelope)
            deadline = time.monotonic() + self.settings.ack_timeout_seconds
            while not pending.event.wait(0.2):
                live = self.live_gateways()
                with self._lock:
                    # A Gateway that stopped heartbeating is no longer waited for.
                    pending.expected &= live | set(pending.acks)
                    if pending.acks and pending.expected <= set(pending.acks):
                        break
                if time.monotonic() >= deadline:
                    with self._lock:
                        missing = sorted(pending.expected - set(pending.acks))
                    raise ApplyError(
                        stage,
                        f"no {stage} ACK within {self.settings.ack_timeout_seconds:g}s from "
                        f"{', '.join(missing) or 'any Gateway'}",
                    )
        except ConnectionError as exc:
            raise ApplyError(stage, f"cannot publish {stage}: {exc}") from None
        finally:
            with self._lock:
                self._pending.pop(envelope.id, None)
        return (time.time() - sent) * 1000.0

    # -- apply runs ----------------------------------------------------------------------------
    def _count(self, world_id: str, run_id: str, metric: Any, third: str) -> None:
        world = metrics.world_label(world_id)
        metric.labels(world, run_id, third).inc()
        self._series.track(world, run_id, metric, (world, run_id, third))

    def lease_name(self, world_id: str) -> str:
        return f"apply:{world_id}"

    def begin(self, world_id: str, plan: ApplyPlan, run_id: str | None = None) -> str:
        """Validate and register a run; raises UnknownWorld, GuardBlocked/Unavailable, ApplyInProgress."""
        self.require_world(world_id)
        self.guard_check(world_id)
        run_id = run_id or uuid.uuid4().hex[:12]
        if self.store.run(run_id) is not None:
            raise ApplyInProgress(f"run id {run_id} was used before; choose another run_id")
        owner = f"{self.instance_id}/{run_id}"
        if not self.store.leases.acquire(
            self.lease_name(world_id), owner, self.settings.apply_lease_seconds
        ):
            holder = self.store.leases.holder(self.lease_name(world_id)) or "another replica"
            raise ApplyInProgress(
                f"an apply run is already in progress for world {world_id} ({holder})"
            )
        self.store.start_run(run_id, world_id, plan, time.time(), owner)
        self._count(world_id, run_id, metrics.world_apply_run_total, "started")
        return run_id

    def _switch(self, world_id: str, plan: ApplyPlan) -> None:
        world = self.require_world(world_id)
        self.store.set_active(world_id, plan.applied_to(world.active))

    def keep_lease(self, world_id: str, owner: str, done: threading.Event) -> None:
        """Renew the world's apply lease while the run lives: it lapses soon after a crash."""
        ttl = self.settings.apply_lease_seconds
        while not done.wait(ttl / 3):
            try:
                if not self.store.leases.renew(self.lease_name(world_id), owner, ttl):
                    log.warning("apply lease of world %s lost by run %s", world_id, owner)
                    return
            except Exception as exc:
                log.warning("apply lease of world %s not renewed: %s", world_id, exc)

    def run(self, world_id: str, run_id: str, plan: ApplyPlan) -> ApplyRun:
        stage = "freeze"
        acks: dict[str, float] = {}
        owner = f"{self.instance_id}/{run_id}"
        done = threading.Event()
        threading.Thread(target=self.keep_lease, args=(world_id, owner, done), daemon=True).start()
        try:
            acks["freeze"] = self._phase(world_id, run_id, FREEZE, "freeze")
            stage = "switch"
            self.store.set_stage(run_id, stage)
            self._switch(world_id, plan)
            stage = "unfreeze"
            self.store.set_stage(run_id, stage)
            acks["unfreeze"] = self._phase(world_id, run_id, UNFREEZE, "unfreeze")
        except Exception as exc:
            failed = exc.stage if isinstance(exc, ApplyError) else stage
            self._fail_run(world_id, run_id, failed, str(exc), rollback="freeze" in acks)
        else:
            self._count(world_id, run_id, metrics.world_apply_run_total, "success")
            self.store.finish_run(run_id, "success", None, None)
            log.info("apply run %s of world %s succeeded (ACKs %s ms)", run_id, world_id, acks)
        finally:
            done.set()
            self.store.leases.release(self.lease_name(world_id), owner)
        finished = self.store.run(run_id)
        if finished is None:  # deleted under us: say so rather than answer an empty run
            raise UnknownRun(f"apply run {run_id} of world {world_id} is no longer stored")
        return finished

    def _fail_run(
        self, world_id: str, run_id: str, stage: str, message: str, *, rollback: bool
    ) -> None:
        self._count(world_id, run_id, metrics.world_apply_failure_total, stage)
        self._count(world_id, run_id, metrics.world_apply_run_total, "failure")
        self.store.finish_run(run_id, "failure", stage, message)
        log.error(
            "apply run %s of world %s failed in stage %s: %s", run_id, world_id, stage, message
        )
        if rollback and stage != "unfreeze":
            try:  # never leave Gateways frozen after a failed switch
                self._phase(world_id, run_id, UNFREEZE, "unfreeze")
            except ApplyError as unfreeze_error:
                log.error("apply run %s: rollback unfreeze failed: %s", run_id, unfreeze_error)

    def recovery_loop(self) -> None:
        """Sweep for runs whose replica died (their lease lapsed) while this one runs."""
        while not self._stop.wait(max(1.0, self.settings.apply_lease_seconds / 2)):
            try:
                self.recover()
            except Exception as exc:
                log.warning("apply run recovery sweep failed: %s", exc)

    def recover(self) -> int:
        """Fail the runs left ``running`` by a replica that died (their lease lapsed)."""
        recovered = 0
        for run in self.store.running_runs():
            lease = self.lease_name(run.world_id)
            holder = self.store.leases.holder(lease)
            if holder is not None:
                continue  # a live replica is still running it
            stage = run.stage or "freeze"
            if not self.store.leases.acquire(lease, f"{self.instance_id}/recover", 30.0):
                continue
            try:
                log.warning("apply run %s of world %s was left running in stage %s; failing it",
                            run.run_id, run.world_id, stage)  # fmt: skip
                self._count(run.world_id, run.run_id, metrics.world_apply_failure_total, stage)
                self._count(run.world_id, run.run_id, metrics.world_apply_run_total, "failure")
                self.store.finish_run(
                    run.run_id, "failure", stage,
                    "the WorldService running it stopped mid-apply; recovered on restart",
                )  # fmt: skip
                try:  # roll back: Gateways may still hold the freeze
                    envelope = Envelope(
                        type=UNFREEZE, source="qmtl/worldservice", subject=run.world_id,
                        data={"world_id": run.world_id, "run_id": run.run_id,
                              "phase": "unfreeze",
                              "deadline": time.time() + self.settings.freeze_deadline},
                    )  # fmt: skip
                    self.bus.publish(envelope)
                except ConnectionError as exc:
                    log.warning("rollback unfreeze of run %s not published: %s", run.run_id, exc)
                recovered += 1
            finally:
                self.store.leases.release(lease, f"{self.instance_id}/recover")
        return recovered
