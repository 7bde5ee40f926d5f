"""AsyncCircuitBreaker: threshold, refusal, reset, callbacks and exported metrics."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from qmtl.foundation.breaker import AsyncCircuitBreaker, CircuitOpenError, breakers

_names = itertools.count()


def unique_name() -> str:
    return f"test{next(_names)}"


class Boom(Exception):
    pass


class Target:
    """A remote stand-in that fails while ``healthy`` is False and counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.healthy = False

    async def __call__(self) -> str:
        self.calls += 1
        if not self.healthy:
            raise Boom("down")
        return "ok"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def fail_times(breaker: AsyncCircuitBreaker, target: Target, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            await breaker.call(target)


def test_opens_after_three_consecutive_failures() -> None:
    """Two failures keep it closed, the third opens it."""
    breaker, target = AsyncCircuitBreaker(), Target()
    run(fail_times(breaker, target, 2))
    assert not breaker.is_open and breaker.failures == 2
    run(fail_times(breaker, target, 1))
    assert breaker.is_open and breaker.failures == 3


def test_success_resets_consecutive_count() -> None:
    breaker, target = AsyncCircuitBreaker(max_failures=3), Target()
    run(fail_times(breaker, target, 2))
    target.healthy = True
    assert run(breaker.call(target)) == "ok"
    assert breaker.failures == 0
    target.healthy = False
    run(fail_times(breaker, target, 2))
    assert not breaker.is_open


def test_open_refuses_without_calling_and_freezes_count() -> None:
    """While open the target is not called and the failure count does not move."""
    breaker, target = AsyncCircuitBreaker(max_failures=3), Target()
    run(fail_times(breaker, target, 3))
    calls = target.calls
    for _ in range(5):
        with pytest.raises(CircuitOpenError, match="open after 3 consecutive failures"):
            run(breaker.call(target))
    assert target.calls == calls
    assert breaker.failures == 3


def test_decorator_form() -> None:
    breaker = AsyncCircuitBreaker(max_failures=1)
    calls = []

    @breaker
    async def flaky(x: int) -> int:
        calls.append(x)
        raise Boom

    with pytest.raises(Boom):
        run(flaky(1))
    with pytest.raises(CircuitOpenError):
        run(flaky(2))
    assert calls == [1]
    assert flaky.breaker is breaker  # type: ignore[attr-defined]


def test_callback_order_and_close_only_when_open() -> None:
    """on_failure(n) for each failure, then on_open; on_close only if it was open."""
    events: list[object] = []
    breaker = AsyncCircuitBreaker(
        3,
        on_open=lambda: events.append("open"),
        on_close=lambda: events.append("close"),
        on_failure=lambda n: events.append(("failure", n)),
    )
    breaker.reset()
    assert events == []
    run(fail_times(breaker, Target(), 3))
    assert events == [("failure", 1), ("failure", 2), ("failure", 3), "open"]
    breaker.reset()
    assert events[-1] == "close"
    assert not breaker.is_open and breaker.failures == 0


def test_reset_closes_and_calls_flow_again() -> None:
    breaker, target = AsyncCircuitBreaker(), Target()
    run(fail_times(breaker, target, 3))
    breaker.reset()
    target.healthy = True
    assert run(breaker.call(target)) == "ok"


def test_is_failure_filter_does_not_count_client_errors() -> None:
    """Errors the remote is not to blame for (bad input) do not trip the breaker."""
    breaker = AsyncCircuitBreaker(1, is_failure=lambda exc: not isinstance(exc, ValueError))

    async def bad_input() -> None:
        raise ValueError("bad dag")

    for _ in range(3):
        with pytest.raises(ValueError):
            run(breaker.call(bad_input))
    assert not breaker.is_open


def test_named_breaker_exports_metrics() -> None:
    """<name>_breaker_open_total counts openings; <name>_breaker_state tracks state."""
    from prometheus_client import CollectorRegistry

    from qmtl.foundation.catalogue import MetricSpec
    from qmtl.foundation.metrics import create

    name = unique_name()
    REGISTRY = CollectorRegistry()
    open_total = create(
        MetricSpec(f"{name}_breaker_open_total", "counter", (), ("any",), "doc"), registry=REGISTRY
    )
    state = create(
        MetricSpec(f"{name}_breaker_state", "gauge", (), ("any",), "doc"), registry=REGISTRY
    )
    breaker = AsyncCircuitBreaker(name=name, open_total=open_total, state=state)
    target = Target()
    assert REGISTRY.get_sample_value(f"{name}_breaker_state") == 0
    assert REGISTRY.get_sample_value(f"{name}_breaker_open_total") == 0
    run(fail_times(breaker, target, 3))
    assert REGISTRY.get_sample_value(f"{name}_breaker_state") == 1
    assert REGISTRY.get_sample_value(f"{name}_breaker_open_total") == 1
    breaker.reset()
    assert REGISTRY.get_sample_value(f"{name}_breaker_state") == 0
    run(fail_times(breaker, target, 3))
    assert REGISTRY.get_sample_value(f"{name}_breaker_open_total") == 2
    assert breakers()[name] is breaker


def test_the_documented_probe_resets_an_open_breaker() -> None:
    """`if await client.status(): client.breaker.reset()` works on an open breaker."""

    class Client:
        def __init__(self) -> None:
            self.breaker = AsyncCircuitBreaker(name=unique_name())
            self.remote = Target()
            self.diff = self.breaker(self._diff)

        async def _diff(self) -> str:
            return await self.remote()

        async def status(self) -> bool:
            # A health probe never goes through the breaker it is meant to reset.
            return self.remote.healthy

    async def scenario() -> None:
        client = Client()
        for _ in range(3):
            with pytest.raises(Boom):
                await client.diff()
        assert client.breaker.is_open
        assert not await client.status()
        client.remote.healthy = True
        if await client.status():
            client.breaker.reset()
        assert await client.diff() == "ok"

    run(scenario())


def test_invalid_threshold() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AsyncCircuitBreaker(0)


def test_the_documented_reset_snippet_works_on_a_default_client() -> None:
    """`if await client.status(): client.breaker.reset()` on a client built without a breaker."""
    from qmtl.services.dagmanager.client import DagManagerClient

    async def snippet() -> None:
        client = DagManagerClient("127.0.0.1:1", timeout=1)
        assert client.breaker.max_failures == 3 and client.breaker.name == "dagclient"
        if await client.status():  # nothing listens: False, and no AttributeError either way
            client.breaker.reset()
        client.breaker.reset()
        await client.close()

    run(snippet())
