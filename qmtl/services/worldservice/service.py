"""WorldService core: apply runs over the ControlBus, allocation freshness, promotion guard.

An apply run is freeze -> switch -> unfreeze.  Freeze and unfreeze are published on the
ControlBus and need an ACK from a Gateway within ``ack_timeout_seconds``; the switch
updates the world's active strategies.  The stage that fails labels
``world_apply_failure_total``; a failed run still tries to unfreeze so Gateways are not
left frozen.  Applies are refused while any cross-context cache hit is unresolved.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from qmtl import __version__
from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.metrics import BoundedSeries
from qmtl.services.controlbus import ACK, FREEZE, UNFREEZE, Envelope, EventLog, open_bus
from qmtl.services.worldservice import metrics
from qmtl.services.worldservice.store import WorldStore

__all__ = ["ApplyError", "GuardBlocked", "WorldService"]

log = logging.getLogger(__name__)
STAGES = ("freeze", "switch", "unfreeze")


class ApplyError(Exception):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class GuardBlocked(Exception):
    """Promotions are blocked; ``hits`` lists the offending label sets."""

    def __init__(
        self, message: str, hits: list[dict[str, Any]], *, unavailable: bool = False
    ) -> None:
        super().__init__(message)
        self.hits = hits
        self.unavailable = unavailable


@dataclass
class _Pending:
    event: threading.Event
    ack: Envelope | None = None


class WorldService:
    def __init__(self, config: QmtlConfig) -> None:
        self.config = config
        self.ws = config.worldservice
        self.started_at = time.time()
        self.store = WorldStore(self.ws.store)
        self.event_log = EventLog() if config.controlbus.backend == "http" else None
        self.bus = open_bus(config.controlbus, role="worldservice", event_log=self.event_log)
        self.bus.subscribe(self._on_event)
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._applying: set[str] = set()
        self._series = BoundedSeries(self.ws.runs_kept_per_world)
        self.fail_stage: str | None = None  # fault injection: force this stage to fail
        self._stop = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.bus.start()
        threading.Thread(target=self._stale_loop, daemon=True, name="stale-ratio").start()

    def close(self) -> None:
        self._stop.set()
        self.bus.close()
        self.store.close()

    # -- allocations -------------------------------------------------------------------------
    def refresh_stale_ratio(self, now: float | None = None) -> dict[str, float]:
        now = time.time() if now is None else now
        ratios: dict[str, float] = {}
        allocations = self.store.allocations()
        for world_id in self.store.worlds():
            current = [a for a in allocations if a["world_id"] == world_id]
            stale = sum(1 for a in current if now - a["updated_at"] > self.ws.stale_after_seconds)
            ratios[world_id] = stale / len(current) if current else 0.0
            metrics.world_allocation_snapshot_stale_ratio.labels(world_id).set(ratios[world_id])
        return ratios

    def _stale_loop(self) -> None:
        while not self._stop.wait(self.ws.stale_interval_seconds):
            try:
                self.refresh_stale_ratio()
            except Exception as exc:
                log.warning("stale ratio refresh failed: %s", exc)

    # -- ControlBus ----------------------------------------------------------------------------
    def _on_event(self, envelope: Envelope) -> None:
        if envelope.type != ACK:
            return
        correlation = envelope.data.get("correlation_id")
        with self._lock:
            pending = self._pending.get(correlation)
        if pending is not None:
            pending.ack = envelope
            pending.event.set()

    def _phase(self, world_id: str, run_id: str, event_type: str, stage: str) -> float:
        envelope = Envelope(
            type=event_type, source="qmtl/worldservice", subject=world_id,
            data={"world_id": world_id, "run_id": run_id, "phase": stage},
        )  # fmt: skip
        pending = _Pending(threading.Event())
        with self._lock:
            self._pending[envelope.id] = pending
        try:
            self.bus.publish(envelope)
            if not pending.event.wait(self.ws.ack_timeout_seconds):
                raise ApplyError(
                    stage,
                    f"no {stage} ACK from any Gateway within {self.ws.ack_timeout_seconds:g}s",
                )
        except ConnectionError as exc:
            raise ApplyError(stage, f"cannot publish {stage}: {exc}") from None
        finally:
            with self._lock:
                self._pending.pop(envelope.id, None)
        assert pending.ack is not None
        return float(pending.ack.data.get("latency_ms", 0.0))

    # -- promotion guard ----------------------------------------------------------------------
    def guard_hits(self) -> list[dict[str, Any]]:
        """Unresolved cross-context hits from every configured source; raises if one is unreachable."""
        hits: list[dict[str, Any]] = []
        for url in self.ws.cross_context_sources:
            try:
                body = httpx.get(url, timeout=5).json()
            except (httpx.HTTPError, ValueError) as exc:
                raise GuardBlocked(
                    f"promotion guard cannot reach {url}: {exc}", [], unavailable=True
                ) from None
            hits.extend({**h, "source": url} for h in body.get("hits", []))
        if self.ws.prometheus_url:
            try:
                body = httpx.get(
                    f"{self.ws.prometheus_url.rstrip('/')}/api/v1/query",
                    params={"query": "cross_context_cache_hit_total > 0"},
                    timeout=5,
                ).json()
            except (httpx.HTTPError, ValueError) as exc:
                raise GuardBlocked(
                    f"promotion guard cannot query Prometheus: {exc}", [], unavailable=True
                ) from None
            hits.extend(
                {"labels": r["metric"], "value": float(r["value"][1]), "source": "prometheus"}
                for r in body.get("data", {}).get("result", [])
            )
        return hits

    # -- apply runs ----------------------------------------------------------------------------
    def _count(self, world_id: str, run_id: str, metric: Any, third: str) -> None:
        metric.labels(world_id, run_id, third).inc()
        self._series.track(world_id, run_id, metric, (world_id, run_id, third))

    def begin_apply(self, world_id: str, plan: dict[str, Any], run_id: str | None = None) -> str:
        """Validate and register a run; raises KeyError, GuardBlocked or RuntimeError."""
        if self.store.world(world_id) is None:
            raise KeyError(world_id)
        hits = self.guard_hits()
        if hits:
            raise GuardBlocked(
                f"{len(hits)} unresolved cross-context cache hit(s); follow the CrossContextCacheHit runbook "
                "and run `qmtl ops cross-context reset` after remediation",
                hits,
            )
        with self._lock:
            if world_id in self._applying:
                raise RuntimeError(f"an apply run is already in progress for world {world_id}")
            self._applying.add(world_id)
        run_id = run_id or uuid.uuid4().hex[:12]
        self.store.start_run(run_id, world_id, plan, time.time())
        self._count(world_id, run_id, metrics.world_apply_run_total, "started")
        return run_id

    def run_apply(self, world_id: str, run_id: str, plan: dict[str, Any]) -> dict[str, Any]:
        stage = "freeze"
        acks: dict[str, float] = {}
        try:
            if self.fail_stage == "freeze":
                raise ApplyError("freeze", "freeze failed (fault injection)")
            acks["freeze"] = self._phase(world_id, run_id, FREEZE, "freeze")
            stage = "switch"
            if self.fail_stage == "switch":
                raise ApplyError("switch", "switch failed (fault injection)")
            world = self.store.world(world_id) or {"active": []}
            active = (set(world["active"]) | set(plan.get("activate", []))) - set(
                plan.get("deactivate", [])
            )
            self.store.set_active(world_id, sorted(active))
            stage = "unfreeze"
            if self.fail_stage == "unfreeze":
                raise ApplyError("unfreeze", "unfreeze failed (fault injection)")
            acks["unfreeze"] = self._phase(world_id, run_id, UNFREEZE, "unfreeze")
        except Exception as exc:
            failed = exc.stage if isinstance(exc, ApplyError) else stage
            self._count(world_id, run_id, metrics.world_apply_failure_total, failed)
            self._count(world_id, run_id, metrics.world_apply_run_total, "failure")
            self.store.finish_run(run_id, "failure", failed, str(exc))
            log.error(
                "apply run %s of world %s failed in stage %s: %s", run_id, world_id, failed, exc
            )
            if failed != "unfreeze" and "freeze" in acks:
                try:  # never leave Gateways frozen after a failed switch
                    self._phase(world_id, run_id, UNFREEZE, "unfreeze")
                except ApplyError as unfreeze_error:
                    log.error("apply run %s: rollback unfreeze failed: %s", run_id, unfreeze_error)
        else:
            self._count(world_id, run_id, metrics.world_apply_run_total, "success")
            self.store.finish_run(run_id, "success", None, None)
            log.info("apply run %s of world %s succeeded (ACKs %s)", run_id, world_id, acks)
        finally:
            with self._lock:
                self._applying.discard(world_id)
        return self.store.run(run_id) or {}

    def status(self) -> dict[str, Any]:
        return {
            "service": "worldservice",
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "store": self.store.db.describe(),
            "controlbus": {
                "backend": self.config.controlbus.backend,
                "ready": self.bus.ready.is_set(),
            },
            "worlds": self.store.worlds(),
            "applying": sorted(self._applying),
            "faults": {"fail_stage": self.fail_stage},
        }
