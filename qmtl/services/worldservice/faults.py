"""WorldService drills: faulty wrappers (installed only with drills on).

``fail_stage=freeze|switch|unfreeze`` makes apply runs fail in that stage: freeze and
unfreeze events are refused by the ControlBus wrapper, the switch by the store wrapper
(WorldApplyFailureDetected, WorldApplyFailureRateHigh).
"""

from __future__ import annotations

from typing import Any

from qmtl.foundation.faults import FaultSet, Switch
from qmtl.services.controlbus import FREEZE, UNFREEZE, Envelope

__all__ = ["FaultyBus", "FaultyStore", "worldservice_faults"]


def worldservice_faults() -> FaultSet:
    return FaultSet(
        Switch(
            "fail_stage", None, "apply runs fail in this stage",
            choices=("freeze", "switch", "unfreeze"),
        ),
    )  # fmt: skip


class FaultyBus:
    def __init__(self, bus: Any, faults: FaultSet) -> None:
        self._bus = bus
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    def publish(self, envelope: Envelope) -> None:
        stage = {FREEZE: "freeze", UNFREEZE: "unfreeze"}.get(envelope.type)
        if stage is not None and self._faults.fail_stage == stage:
            raise ConnectionError(f"{stage} refused (fault injection: fail_stage={stage})")
        self._bus.publish(envelope)


class FaultyStore:
    def __init__(self, store: Any, faults: FaultSet) -> None:
        self._store = store
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def set_active(self, world_id: str, active: list[str]) -> None:
        if self._faults.fail_stage == "switch":
            raise RuntimeError("switch failed (fault injection: fail_stage=switch)")
        self._store.set_active(world_id, active)
