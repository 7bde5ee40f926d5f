"""The event loop every QMTL service runs on: uvloop.

Services spend much of a request in the loop itself (socket readiness, callbacks,
futures crossing from worker threads); uvloop does that work in C.  ``benchmarks/
bench_gateway.py`` measures the service against a floor that uses the same loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a uvloop loop (same cancellation and shutdown semantics)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
