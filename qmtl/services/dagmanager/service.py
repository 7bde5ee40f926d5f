"""The DAG Manager as one object: components, background loops and status.

``server.py`` puts gRPC and HTTP in front of it; tests can drive it directly.
:func:`build_service` is the wiring: it opens the configured backends and, only when
``drills.enabled`` is set, wraps them in the fault wrappers of :mod:`.faults`.

Replicas share one graph store: GC and the lag monitor must run once, so they run on
the replica holding the ``dagmanager-leader`` lease (renewed every probe interval,
taken over by another replica within ``leader_lease_seconds`` when the leader dies);
``dagmanager_leader`` says which one leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from qmtl import __version__
from qmtl.foundation import crosscontext
from qmtl.foundation.blocking import run_blocking
from qmtl.foundation.breaker import BREAKER_THRESHOLD, AsyncCircuitBreaker
from qmtl.foundation.config import DagManagerConfig, QmtlConfig
from qmtl.foundation.dependencies import DependencyProbes, bounded
from qmtl.foundation.faults import FaultSet
from qmtl.services.dagmanager import metrics
from qmtl.services.dagmanager.diff import DiffEngine
from qmtl.services.dagmanager.faults import (
    FaultyQueues,
    FaultyStore,
    dagmanager_faults,
    stalled_schedule,
)
from qmtl.services.dagmanager.gc import GarbageCollector
from qmtl.services.dagmanager.lag import LagMonitor
from qmtl.services.dagmanager.queues import QueueBackend, open_queue_backend
from qmtl.services.dagmanager.store import GraphStore, open_graph_store

__all__ = ["LEADER_LEASE", "DagManagerService", "build_service", "tune_gc", "wire"]

log = logging.getLogger(__name__)
#: Both breakers open after three consecutive failures (fixed, as documented).
LEADER_LEASE = "dagmanager-leader"


def tune_gc() -> None:
    """Collect generation 0 less often: a 10k-node diff allocates ~100k objects, and with the
    default threshold (700) the collector runs hundreds of times per diff, including full
    collections over the plan cache (bench_diff.py shows the effect)."""
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(50_000, gen1, gen2)


class DagManagerService:
    def __init__(
        self,
        config: DagManagerConfig,
        *,
        store: GraphStore,
        queues: QueueBackend,
        faults: FaultSet | None = None,
        instance_id: str | None = None,
        probes: DependencyProbes | None = None,
    ) -> None:
        self.config = config
        self.started_at = time.time()
        self.instance_id = (
            instance_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        )
        metrics.diff_duration_window.window_seconds = config.p95_window_seconds
        self.store = store
        self.queues = queues
        self.faults = faults
        self.kafka_breaker = AsyncCircuitBreaker(
            BREAKER_THRESHOLD,
            name="kafka",
            open_total=metrics.kafka_breaker_open_total,
            state=metrics.kafka_breaker_state,
            on_open=lambda: log.error(
                "kafka admin breaker opened after %d failures", BREAKER_THRESHOLD
            ),
            on_close=lambda: log.info("kafka admin breaker closed after a healthy probe"),
        )
        self.store_breaker = AsyncCircuitBreaker(
            BREAKER_THRESHOLD,
            name="graphstore",
            open_total=metrics.graphstore_breaker_open_total,
            state=metrics.graphstore_breaker_state,
            on_open=lambda: log.error(
                "graph store breaker opened after %d failures", BREAKER_THRESHOLD
            ),
            on_close=lambda: log.info("graph store breaker closed after a healthy probe"),
        )
        common = {"store_breaker": self.store_breaker, "queue_breaker": self.kafka_breaker}
        self.engine = DiffEngine(self.store, self.queues, config, **common)
        self.gc = GarbageCollector(self.store, self.queues, config, **common)
        self.lag = LagMonitor(self.store, self.queues, config)
        self.sentinel_gaps: list[tuple[str, str]] = []
        self.leader = False
        self._tasks: list[asyncio.Task[None]] = []
        self.probes = probes or DependencyProbes()
        self.probes.add("graph_store", self.store.dialect, self.store.ping)
        if self.queues.kind != "inprocess":
            self.probes.add("queues", self.queues.kind, self.queues.probe)

    # -- housekeeping --------------------------------------------------------------------
    def refresh_sentinel_gaps(self) -> None:
        self.sentinel_gaps = self.store.sentinel_gaps()
        metrics.sentinel_gap_count.set(len(self.sentinel_gaps))

    def probe_breakers(self) -> None:
        """Health probes bypass the breakers they reset (a probe that answers is the explicit signal that closes them)."""
        if self.kafka_breaker.is_open and self.queues.probe():
            self.kafka_breaker.reset()
        if self.store_breaker.is_open:
            with contextlib.suppress(Exception):
                if self.store.ping():
                    self.store_breaker.reset()

    def renew_leadership(self) -> bool:
        """Take or keep the leader lease; GC and the lag monitor run only on the leader."""
        assert self.store.leases is not None
        try:
            leading = self.store.leases.acquire(
                LEADER_LEASE, self.instance_id, self.config.leader_lease_seconds
            )
        except Exception as exc:
            log.warning("leader lease: cannot reach the graph store: %s", exc)
            leading = False
        if leading != self.leader:
            log.info(
                "dagmanager %s is now %s", self.instance_id, "leader" if leading else "standby"
            )
        self.leader = leading
        metrics.dagmanager_leader.set(1 if leading else 0)
        return leading

    def reset_cross_context(self) -> int:
        """Drop every cross-context series (runbook step 5); returns how many there were."""
        return crosscontext.reset()

    def cross_context_report(self) -> dict[str, Any]:
        return crosscontext.report("dagmanager")

    async def _loop(self, name: str, interval: float, step: Callable[[], Any]) -> None:
        while True:
            try:
                await run_blocking(step)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if name == "gc":
                    self.gc.failed_runs += 1
                log.warning("%s loop: run failed: %s", name, exc)
            await asyncio.sleep(interval)

    def gc_step(self) -> None:
        if not self.leader:
            return
        self.gc.sweep()

    def lag_step(self) -> None:
        if self.leader:
            self.lag.poll()

    def housekeeping_step(self) -> None:
        was_leader = self.leader
        self.renew_leadership()
        self.probe_breakers()
        self.refresh_sentinel_gaps()
        self.store.checkpoint()
        if self.leader and not was_leader:
            self.gc_step()  # a new leader runs GC now, not one interval later

    def start(self) -> None:
        self.renew_leadership()
        probe = min(self.config.breaker_probe_seconds, self.config.leader_lease_seconds / 3)
        self._tasks = [
            asyncio.create_task(self._loop("gc", self.config.gc_interval_seconds, self.gc_step)),
            asyncio.create_task(self._loop("housekeeping", probe, self.housekeeping_step)),
            asyncio.create_task(self._loop("lag", self.config.lag_interval_seconds, self.lag_step)),
        ]
        self.probes.start()

    async def stop(self) -> None:
        await self.probes.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.leader and self.store.leases is not None:
            with contextlib.suppress(Exception):
                self.store.leases.release(LEADER_LEASE, self.instance_id)
        self.queues.close()
        self.store.close()

    async def status(self) -> dict[str, Any]:
        """The service's state; never waits on a backend longer than the probe deadline
        (``dependencies`` says which one is slow)."""
        report = self.gc.last_report
        deadline = self.probes.deadline
        counts = await bounded(self.store.counts, deadline, "graph store")
        dependencies = self.probes.report()
        store_ok = (dependencies.get("graph_store") or {}).get("ok")
        queues_ok = (dependencies.get("queues") or {"ok": True}).get("ok")
        return {
            "service": "dagmanager",
            "version": __version__,
            "instance": self.instance_id,
            "leader": self.leader,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "dependencies": dependencies,
            "store": {"backend": self.store.describe(), "ok": store_ok, **counts},
            "queue_backend": {"kind": self.queues.kind, "ok": queues_ok},
            "namespace_queues": self.config.namespace_queues,
            "breakers": {
                "kafka": self.kafka_breaker.describe(),
                "graphstore": self.store_breaker.describe(),
            },
            "plan_cache": {"entries": len(self.engine.plans), "bytes": self.engine.plans.nbytes},
            "gc": {
                "interval_seconds": self.config.gc_interval_seconds,
                "completed_runs": self.gc.completed_runs,
                "failed_runs": self.gc.failed_runs,
                "last_run": report.as_dict() if report else None,
            },
            "sentinel_gaps": [{"strategy_id": s, "version": v} for s, v in self.sentinel_gaps],
            "faults": self.faults.as_dict() if self.faults is not None else None,
        }


def wire(
    config: DagManagerConfig,
    store: GraphStore,
    queues: QueueBackend,
    *,
    drills: bool,
    probes: DependencyProbes | None = None,
) -> DagManagerService:
    """The service over ``store`` and ``queues``; with ``drills``, behind fault wrappers."""
    faults = None
    if drills:
        faults = dagmanager_faults()
        store = FaultyStore(store, faults)  # type: ignore[assignment]
        queues = FaultyQueues(queues, faults)
    service = DagManagerService(config, store=store, queues=queues, faults=faults, probes=probes)
    if faults is not None:
        service.gc_step = stalled_schedule(service.gc_step, faults)  # type: ignore[method-assign]
    return service


def build_service(config: QmtlConfig) -> DagManagerService:
    """Open the configured backends and wire them (fault wrappers only with drills on)."""
    cfg = config.dagmanager
    store = open_graph_store(cfg.graph_store)
    queues = open_queue_backend(
        cfg.queue_backend, cfg.kafka_brokers, timeout=cfg.kafka_timeout_seconds
    )
    probes = DependencyProbes(
        interval=config.telemetry.dependency_probe_seconds,
        deadline=config.telemetry.dependency_deadline_seconds,
    )
    return wire(cfg, store, queues, drills=config.drills.enabled, probes=probes)
