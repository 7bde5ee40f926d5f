"""WorldService core: worlds, allocation freshness, and the wiring of apply runs
(:mod:`.applies`) and the promotion guard (:mod:`.guard`).

Before a run starts, the promotion guard (:mod:`.guard`) must allow the world: no
unresolved cross-context hit, every source readable, no hold after a reset.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx

from qmtl import __version__
from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.dependencies import DependencyProbes, bounded
from qmtl.foundation.errors import UnknownWorld
from qmtl.services.controlbus import (
    WORLD_DELETED,
    ControlBus,
    Envelope,
    EventLog,
)
from qmtl.services.worldservice import metrics
from qmtl.services.worldservice.applies import ApplyRuns
from qmtl.services.worldservice.guard import PromotionGuard
from qmtl.services.worldservice.models import Allocation, ApplyPlan, ApplyRun, World
from qmtl.services.worldservice.store import WorldStore

__all__ = ["WorldService"]

log = logging.getLogger(__name__)


#: Apply runs of different worlds that may run at once (one per world at a time anyway).
APPLY_WORKERS = 16


class WorldService:
    def __init__(
        self,
        config: QmtlConfig,
        *,
        store: WorldStore,
        bus: ControlBus,
        event_log: EventLog | None = None,
        http_get: Callable[..., Any] | None = None,
        instance_id: str | None = None,
        probes: DependencyProbes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.settings = config.worldservice
        self.instance_id = (
            instance_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        self.started_at = time.time()
        self.store = store
        self.event_log = event_log
        self.bus = bus
        # The guard polls its sources every few seconds: one client for all of them (a
        # client per request spent ~15 % of a core building SSL contexts at a 0.5 s poll).
        self._http: httpx.Client | None = None
        if http_get is None:
            self._http = httpx.Client()
            http_get = self._http.get
        self._http_get = http_get
        self._stop = threading.Event()
        #: Background loops and apply runs, so that close() stops what start() began.
        self._loops: list[threading.Thread] = []
        self._applies = ThreadPoolExecutor(APPLY_WORKERS, thread_name_prefix="apply-run")
        self.probes = probes or DependencyProbes()
        self.probes.add("world_store", store.db.dialect, store.ping)
        bus_probe = getattr(bus, "probe", None)
        if bus_probe is not None and config.controlbus.backend == "kafka":
            self.probes.add("controlbus", "kafka", bus_probe)
        dm = config.dagmanager
        dagmanager_source = f"{dm.url}/admin/cross-context"
        self.guard = PromotionGuard(
            config,
            store,
            http_get,
            [dagmanager_source, *self.settings.cross_context_sources],
            clock=clock,
        )
        self.applies = ApplyRuns(
            self.settings, store=store, bus=bus, instance_id=self.instance_id, stop=self._stop,
            require_world=self.require_world, guard_check=self.guard.check,
        )  # fmt: skip
        self.bus.subscribe(self.applies.on_event)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.probes.start_thread()
        self.bus.start()
        self.applies.recover()
        for target, name in (
            (self._stale_loop, "stale-ratio"), (self._guard_loop, "promotion-guard"),
            (self.applies.recovery_loop, "run-recovery"),
        ):  # fmt: skip
            loop = threading.Thread(target=target, daemon=True, name=name)
            loop.start()
            self._loops.append(loop)

    def start_apply(self, world_id: str, run_id: str, plan: ApplyPlan) -> Future[ApplyRun]:
        """Run a registered apply in the background (``POST .../apply`` without ``wait``)."""
        return self._applies.submit(self.applies.run, world_id, run_id, plan)

    def close(self) -> None:
        self._stop.set()
        # A run still going holds its world's lease; another replica (or this one after a
        # restart) recovers it once the lease lapses, as after a crash.
        self._applies.shutdown(wait=False, cancel_futures=True)
        for loop in self._loops:
            loop.join(timeout=5)
        self.probes.stop_thread()
        self.bus.close()
        self.guard.close()
        self.store.close()
        if self._http is not None:
            self._http.close()

    # -- apply runs (ApplyRuns does the work) ---------------------------------------------------
    def begin_apply(self, world_id: str, plan: ApplyPlan, run_id: str | None = None) -> str:
        """Validate and register a run; raises UnknownWorld, GuardBlocked/Unavailable, ApplyInProgress."""
        return self.applies.begin(world_id, plan, run_id)

    def run_apply(self, world_id: str, run_id: str, plan: ApplyPlan) -> ApplyRun:
        return self.applies.run(world_id, run_id, plan)

    def recover_runs(self) -> int:
        return self.applies.recover()

    def live_gateways(self) -> set[str]:
        return self.applies.live_gateways()

    # -- worlds ------------------------------------------------------------------------------
    def require_world(self, world_id: str) -> World:
        found = self.store.world(world_id)
        if found is None:
            raise UnknownWorld(f"no world {world_id!r}; create it with POST /worlds")
        return found

    def delete_world(self, world_id: str) -> None:
        if not self.store.delete_world(world_id):
            raise UnknownWorld(f"no world {world_id!r}")
        metrics.forget_world(world_id)
        try:
            self.bus.publish(Envelope(type=WORLD_DELETED, source="qmtl/worldservice",
                                      subject=world_id, data={"world_id": world_id}))  # fmt: skip
        except ConnectionError as exc:
            log.warning("world %s deleted, but Gateways were not told: %s", world_id, exc)

    # -- allocations -------------------------------------------------------------------------
    def refresh_stale_ratio(self, now: float | None = None) -> dict[str, float]:
        now = time.time() if now is None else now
        ratios: dict[str, float] = {}
        by_world: dict[str, list[Allocation]] = {}
        for allocation in self.store.allocations():
            by_world.setdefault(allocation.world_id, []).append(allocation)
        for world_id in self.store.worlds():
            current = by_world.get(world_id, [])
            stale = sum(1 for a in current if a.stale(now, self.settings.stale_after_seconds))
            ratios[world_id] = stale / len(current) if current else 0.0
            metrics.world_allocation_snapshot_stale_ratio.labels(metrics.world_label(world_id)).set(
                ratios[world_id]
            )
        return ratios

    def _stale_loop(self) -> None:
        while not self._stop.wait(self.settings.stale_interval_seconds):
            try:
                self.refresh_stale_ratio()
            except Exception as exc:
                log.warning("stale ratio refresh failed: %s", exc)

    # -- promotion guard ----------------------------------------------------------------------
    def _guard_loop(self) -> None:
        """Read every source at start and then on a schedule: ``GET /promotion-guard``
        answers from these reads, and a hit cleared by a restart is noticed between applies."""
        while True:
            try:
                self.guard.read()
            except Exception as exc:
                log.warning("promotion guard poll failed: %s", exc)
            if self._stop.wait(self.settings.guard_poll_seconds):
                return

    async def status(self) -> dict[str, Any]:
        """The service's state; never waits on the store longer than the probe deadline
        (``dependencies`` says which backend is slow)."""
        deadline = self.probes.deadline
        worlds = await bounded(self.store.worlds, deadline, "world store")
        running = await bounded(
            lambda: [r.run_id for r in self.store.running_runs()], deadline, "world store"
        )
        return {
            "service": "worldservice",
            "version": __version__,
            "instance": self.instance_id,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "dependencies": self.probes.report(),
            "store": self.store.db.describe(),
            "controlbus": {
                "backend": self.config.controlbus.backend,
                "ready": self.bus.healthy(),
                "invalid_events": self.bus.invalid,
            },
            "gateways": sorted(self.applies.live_gateways()),
            "worlds": worlds,
            "running": running,
        }
