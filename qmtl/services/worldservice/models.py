"""What the WorldService keeps and answers, as typed values from the store to the reply.

The store builds these from rows; the service, the apply runs and the promotion guard
read attributes; the HTTP layer writes :meth:`as_dict`.  A key spelled wrong is then a
type error at the first run of mypy, not a ``KeyError`` in a rarely taken branch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Allocation", "ApplyPlan", "ApplyRun", "GuardSource", "World"]


@dataclass(frozen=True, slots=True)
class World:
    world_id: str
    created_at: float
    #: Strategy ids the last successful apply left active (sorted).
    active: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"world_id": self.world_id, "created_at": self.created_at,
                "active": list(self.active)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Allocation:
    world_id: str
    strategy_id: str
    weight: float
    updated_at: float

    def stale(self, now: float, after_seconds: float) -> bool:
        """Whether no one has written this weight for longer than ``after_seconds``."""
        return now - self.updated_at > after_seconds

    def as_dict(self, *, stale: bool) -> dict[str, Any]:
        return {"world_id": self.world_id, "strategy_id": self.strategy_id,
                "weight": self.weight, "updated_at": self.updated_at, "stale": stale}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ApplyPlan:
    """Which strategies an apply turns on and off (the switch between freeze and unfreeze)."""

    activate: tuple[str, ...] = ()
    deactivate: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApplyPlan:
        return cls(tuple(data.get("activate", ())), tuple(data.get("deactivate", ())))

    def applied_to(self, active: Iterable[str]) -> list[str]:
        """The active set after this plan: activations added, then deactivations removed."""
        return sorted((set(active) | set(self.activate)) - set(self.deactivate))

    def as_dict(self) -> dict[str, list[str]]:
        return {"activate": list(self.activate), "deactivate": list(self.deactivate)}


@dataclass(frozen=True, slots=True)
class ApplyRun:
    run_id: str
    world_id: str
    #: ``running``, ``success`` or ``failure``.
    status: str
    #: The stage it is in while running, the stage that failed after a failure, else None.
    stage: str | None
    error: str | None
    plan: ApplyPlan
    started_at: float
    finished_at: float | None
    #: ``instance/run_id`` of the replica running it (the apply lease's holder).
    owner: str | None

    def as_dict(self) -> dict[str, Any]:
        """The run as ``GET /worlds/{id}/runs/{run}`` answers it (the owner is internal)."""
        return {
            "run_id": self.run_id, "world_id": self.world_id, "status": self.status,
            "stage": self.stage, "error": self.error, "plan": self.plan.as_dict(),
            "started_at": self.started_at, "finished_at": self.finished_at,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class GuardSource:
    """An SDK process's cross-context report the promotion guard reads for one world."""

    url: str
    world_id: str
    strategy_id: str
    registered_at: float
    #: When the guard last read it successfully (registration counts as a read).
    last_ok: float
    #: Whether that read reported cross-context hits.
    had_hits: bool

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "world_id": self.world_id, "strategy_id": self.strategy_id,
                "registered_at": self.registered_at, "last_ok": self.last_ok,
                "had_hits": self.had_hits}  # fmt: skip
