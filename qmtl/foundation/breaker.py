"""Circuit breaker for remote calls (gRPC to the DAG Manager, Kafka admin, graph store).

Closed -> open after ``max_failures`` consecutive failures; a success in between
resets the count.  There is deliberately no timer that half-opens the breaker: QMTL
closes a breaker only on an explicit success signal, i.e. a health probe that is
*not* routed through the breaker calls :meth:`AsyncCircuitBreaker.reset`::

    if await client.status():
        client.breaker.reset()

A breaker reports to the ``<name>_breaker_open_total`` counter (times it opened) and
``<name>_breaker_state`` gauge (1 open, 0 closed) it is given; the owning service
defines those collectors from the catalogue.  Named breakers can be looked up with
:func:`breakers` for ``/status`` pages.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from qmtl.foundation.errors import Unavailable

__all__ = ["BREAKER_THRESHOLD", "AsyncCircuitBreaker", "CircuitOpenError", "breakers"]

#: Every QMTL breaker (dagclient, kafka_admin, graph_store) opens after three consecutive
#: failures: one number, so the BreakerOpen alerts mean the same everywhere.
BREAKER_THRESHOLD = 3
P = ParamSpec("P")
R = TypeVar("R")

_registry: dict[str, AsyncCircuitBreaker] = {}
_registry_lock = threading.Lock()


class CircuitOpenError(Unavailable):
    """Raised instead of calling the target while the breaker is open (an outage: retry)."""

    code = "circuit_open"

    def __init__(self, name: str | None, failures: int) -> None:
        label = f"circuit breaker {name!r}" if name else "circuit breaker"
        super().__init__(
            f"{label} is open after {failures} consecutive failures; the call was not made. "
            "It closes when a health probe succeeds and reset() is called."
        )
        self.breaker_name = name


def breakers() -> dict[str, AsyncCircuitBreaker]:
    """Named breakers of this process, for status endpoints."""
    with _registry_lock:
        return dict(_registry)


class AsyncCircuitBreaker:
    """Refuse calls to a failing dependency until a probe says it is healthy again.

    >>> breaker = AsyncCircuitBreaker(max_failures=3)
    >>> @breaker
    ... async def fetch() -> str:
    ...     return "ok"

    ``on_failure(count)`` runs after every counted failure, ``on_open()`` when the
    breaker opens (after ``on_failure`` of the failure that opened it), ``on_close()``
    when :meth:`reset` closes an open breaker.  ``is_failure`` decides which
    exceptions count (default: all); the exception is re-raised either way.
    """

    def __init__(
        self,
        max_failures: int = 3,
        *,
        on_open: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
        on_failure: Callable[[int], None] | None = None,
        name: str | None = None,
        is_failure: Callable[[BaseException], bool] | None = None,
        open_total: Any | None = None,
        state: Any | None = None,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.max_failures = max_failures
        self.name = name
        self._on_open = on_open
        self._on_close = on_close
        self._on_failure = on_failure
        self._is_failure = is_failure or (lambda exc: True)
        self._failures = 0
        self._open = False
        self._lock = threading.Lock()
        self._open_total = open_total
        self._state = state
        if state is not None:
            state.set(0)
        if name is not None:
            with _registry_lock:
                _registry[name] = self

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def state(self) -> str:
        return "open" if self._open else "closed"

    def record_success(self) -> None:
        with self._lock:
            if not self._open:
                self._failures = 0

    def record_failure(self) -> None:
        with self._lock:
            if self._open:
                return
            self._failures += 1
            count = self._failures
            opened = count >= self.max_failures
            if opened:
                self._open = True
        if self._on_failure is not None:
            self._on_failure(count)
        if opened:
            if self._open_total is not None:
                self._open_total.inc()
            if self._state is not None:
                self._state.set(1)
            if self._on_open is not None:
                self._on_open()

    def reset(self) -> None:
        """Close the breaker and clear the failure count (after a healthy probe)."""
        with self._lock:
            was_open = self._open
            self._open = False
            self._failures = 0
        if self._state is not None:
            self._state.set(0)
        if was_open and self._on_close is not None:
            self._on_close()

    def check(self) -> None:
        """Raise :class:`CircuitOpenError` when open; for callers that wrap sync code."""
        if self._open:
            raise CircuitOpenError(self.name, self._failures)

    async def call(
        self, func: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        self.check()
        try:
            result = await func(*args, **kwargs)
        except Exception as exc:
            if self._is_failure(exc):
                self.record_failure()
            raise
        self.record_success()
        return result

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return await self.call(func, *args, **kwargs)

        wrapper.breaker = self  # type: ignore[attr-defined]
        return wrapper

    def __repr__(self) -> str:
        return f"<AsyncCircuitBreaker {self.name or ''} {self.state} failures={self._failures}>"

    def describe(self) -> dict[str, Any]:
        return {"state": self.state, "failures": self._failures, "max_failures": self.max_failures}
