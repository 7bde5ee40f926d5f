"""Fault switches for drills, installed as wrappers at wiring time.

Drills (``qmtl ops fault ...``, the end-to-end alert suite, ``qmtl up``) make one real
code path misbehave the way production would -- a slow diff, a refused topic, a
stalled GC loop -- and the metrics and alerts then react through the normal code.

The mechanism keeps drills out of the product's core classes: a service declares its
:class:`Switch` es, and only when ``drills.enabled`` is set does its wiring wrap the
affected ports (queue backend, store, engine, ...) in faulty wrappers that read a
:class:`FaultSet`, and serve ``/admin/faults``.  With drills off nothing is wrapped,
no fault branch sits on a hot path, and ``/admin/faults`` answers 404.

    faults = FaultSet(Switch("diff_delay_ms", 0.0, "every diff sleeps this long"))
    faults.update({"diff_delay_ms": 300})
    faults.diff_delay_ms  ->  300.0
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from qmtl.foundation.errors import InvalidRequest

__all__ = ["FaultSet", "Faulty", "Switch"]


@dataclass(frozen=True)
class Switch:
    """One fault: its name, its off value and what it does (shown on errors)."""

    name: str
    default: bool | float | str | None
    help: str
    #: Allowed values of a text switch (``None`` is always allowed: off).
    choices: tuple[str, ...] = ()


class FaultSet:
    """The switches of one process; values are validated as a whole before any changes."""

    def __init__(self, *switches: Switch) -> None:
        self._switches = {s.name: s for s in switches}
        self._values: dict[str, Any] = {s.name: s.default for s in switches}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    def _check(self, name: str, value: Any) -> Any:
        switch = self._switches.get(name)
        if switch is None:
            known = ", ".join(sorted(self._switches))
            raise InvalidRequest(f"unknown fault {name!r}; known: {known}")
        if isinstance(switch.default, bool):
            if not isinstance(value, bool):
                raise InvalidRequest(f"fault {name} takes true/false, got {value!r}")
            return value
        if switch.choices:
            if value is not None and value not in switch.choices:
                raise InvalidRequest(
                    f"fault {name} takes one of {', '.join(switch.choices)} or null, got {value!r}"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidRequest(f"fault {name} takes a non-negative number, got {value!r}")
        return float(value)

    def update(self, changes: Any) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise InvalidRequest("faults are a JSON object of NAME: VALUE")
        checked = {name: self._check(name, value) for name, value in changes.items()}
        with self._lock:
            self._values.update(checked)
        return self.as_dict()

    def clear(self) -> dict[str, Any]:
        with self._lock:
            self._values = {s.name: s.default for s in self._switches.values()}
        return self.as_dict()

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def describe(self) -> dict[str, str]:
        return {name: s.help for name, s in sorted(self._switches.items())}


class Faulty:
    """A port behind a drill: a subclass overrides the calls its switches can break and
    reaches the real port as ``self._inner``; every other attribute is the port's own.

    Installed only at wiring time with drills on, so the product's code never asks
    whether a drill is running.  A subclass whose switches can make a call slow says
    ``local = False``, so no call through it runs on an event loop.
    """

    def __init__(self, inner: Any, faults: FaultSet) -> None:
        self._inner = inner
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
