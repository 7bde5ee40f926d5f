"""The Gateway's side of an apply run: freezes and unfreezes from the ControlBus, ACKed.

A FREEZE stops submissions to its world until the matching UNFREEZE or its deadline,
whichever comes first (a WorldService that died mid-run must not freeze a world for
ever); every FREEZE and UNFREEZE is ACKed with this Gateway's id, which is what the
WorldService waits for before it switches.  Replayed events past their deadline change
nothing and get no ACK.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from qmtl.services.controlbus import ACK, FREEZE, UNFREEZE, WORLD_DELETED, ControlBus, Envelope
from qmtl.services.gateway import metrics

__all__ = ["Freezes"]

log = logging.getLogger(__name__)


class Freezes:
    def __init__(
        self, bus: ControlBus, gateway_id: str, max_freeze_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.bus = bus
        self.gateway_id = gateway_id
        self.max_freeze_seconds = max_freeze_seconds
        self.clock = clock
        #: world id -> unix time after which the freeze lapses by itself.
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def until(self, world_id: str) -> float | None:
        """When the freeze of ``world_id`` lapses, or None when it is not frozen."""
        with self._lock:
            deadline = self._until.get(world_id)
        if deadline is not None and deadline <= self.clock():
            self._lapse(world_id)
            return None
        return deadline

    def remaining(self) -> dict[str, float]:
        """Seconds left of every live freeze (what ``/status`` shows)."""
        self.expire()
        now = self.clock()
        with self._lock:
            return {w: round(d - now, 1) for w, d in sorted(self._until.items())}

    def expire(self) -> None:
        now = self.clock()
        with self._lock:
            expired = [w for w, deadline in self._until.items() if deadline <= now]
        for world in expired:
            self._lapse(world)

    def _lapse(self, world: str) -> None:
        with self._lock:
            deadline = self._until.pop(world, None)
        if deadline is not None:
            log.warning(
                "world %s: freeze lapsed at its deadline without an unfreeze (the apply run's "
                "WorldService may have died); accepting its submissions again", world,
            )  # fmt: skip

    def on_event(self, envelope: Envelope) -> None:
        """The ControlBus handler: freeze, unfreeze, ACK; forget a deleted world's series."""
        if envelope.type == WORLD_DELETED:
            metrics.forget_world(envelope.data["world_id"])
            return
        if envelope.type not in (FREEZE, UNFREEZE):
            return
        world = str(envelope.data["world_id"])
        phase = "freeze" if envelope.type == FREEZE else "unfreeze"
        deadline = float(
            envelope.data.get("deadline") or envelope.epoch() + self.max_freeze_seconds
        )
        if deadline <= self.clock():
            return  # a replayed event from a finished or abandoned run: nothing to do
        with self._lock:
            if phase == "freeze":
                self._until[world] = min(deadline, self.clock() + self.max_freeze_seconds)
            else:
                self._until.pop(world, None)
        ack = Envelope(
            type=ACK, source="qmtl/gateway", subject=world,
            data={"world_id": world, "phase": phase, "correlation_id": envelope.id,
                  "run_id": envelope.data.get("run_id"), "gateway_id": self.gateway_id},
        )  # fmt: skip
        try:
            self.bus.publish(ack)
        except ConnectionError as exc:
            log.error("cannot ACK %s for world %s: %s", phase, world, exc)
            return
        latency = max(0.0, (time.time() - envelope.epoch()) * 1000.0)
        metrics.observe_ack(world, phase, latency)
