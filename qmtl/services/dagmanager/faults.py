"""Fault switches for drills and the end-to-end alert suite (``qmtl ops fault ...``).

Each switch makes one real code path misbehave the way production would (a slow diff,
a refused topic, a stalled GC loop); metrics and alerts then react through the normal
code, which is what the e2e suite proves.  Only reachable through the admin API.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["FaultError", "Faults"]


class FaultError(ValueError):
    """Unknown fault name or bad value."""


@dataclass
class Faults:
    diff_delay_ms: float = 0.0
    diff_fail: bool = False
    sentinel_skip: bool = False
    gc_stall: bool = False
    queue_create_fail: bool = False
    queue_backend_down: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise FaultError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            if known[name] in (bool, "bool"):
                if not isinstance(value, bool):
                    raise FaultError(f"fault {name} takes true/false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise FaultError(f"fault {name} takes a non-negative number, got {value!r}")
        for name, value in changes.items():
            setattr(self, name, value)

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
