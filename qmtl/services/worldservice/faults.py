"""WorldService drills: faulty wrappers (installed only with drills on).

``fail_stage=freeze|switch|unfreeze`` makes apply runs fail in that stage: freeze and
unfreeze events are refused by the ControlBus wrapper, the switch by the store wrapper
(WorldApplyFailureDetected, WorldApplyFailureRateHigh).
"""

from __future__ import annotations

from qmtl.foundation.faults import FaultSet, Faulty, Switch
from qmtl.services.controlbus import FREEZE, UNFREEZE, Envelope

__all__ = ["FaultyBus", "FaultyStore", "worldservice_faults"]


def worldservice_faults() -> FaultSet:
    return FaultSet(
        Switch(
            "fail_stage", None, "apply runs fail in this stage",
            choices=("freeze", "switch", "unfreeze"),
        ),
    )  # fmt: skip


class FaultyBus(Faulty):
    def publish(self, envelope: Envelope) -> None:
        stage = {FREEZE: "freeze", UNFREEZE: "unfreeze"}.get(envelope.type)
        if stage is not None and self._faults.fail_stage == stage:
            raise ConnectionError(f"{stage} refused (fault injection: fail_stage={stage})")
        self._inner.publish(envelope)


class FaultyStore(Faulty):
    def set_active(self, world_id: str, active: list[str]) -> None:
        if self._faults.fail_stage == "switch":
            raise RuntimeError("switch failed (fault injection: fail_stage=switch)")
        self._inner.set_active(world_id, active)
