"""Dependency probes in-process: a hanging check is reported at its deadline, never stacked."""

from __future__ import annotations

import asyncio
import threading

from qmtl.foundation.dependencies import DependencyProbes, bounded
from qmtl.testing.metrics import value


def test_a_hanging_check_is_down_at_its_deadline_and_never_stacked() -> None:
    release = threading.Event()
    started: list[int] = []

    def hangs() -> bool:
        started.append(1)
        release.wait(10)
        return True

    async def scenario() -> None:
        probes = DependencyProbes(interval=0.01, deadline=0.1)
        probes.add("graph_store", "postgresql", hangs)
        probes.add("fine", "sqlite", lambda: True)
        probes.add("refusing", "grpc", lambda: False)
        await probes.check_all()
        report = probes.report()
        assert report["graph_store"]["ok"] is False and "answer" in report["graph_store"]["error"]
        assert report["fine"]["ok"] is True and report["refusing"]["ok"] is False
        for _ in range(3):
            await probes.check_all()
        assert len(started) == 1, "a check still running is not started again"
        assert "still waiting" in probes.report()["graph_store"]["error"]
        assert probes.slow() == ["graph_store", "refusing"]
        release.set()
        await asyncio.sleep(0.05)
        await probes.check_all()
        assert probes.report()["graph_store"]["ok"] is True
        await probes.stop()

    asyncio.run(scenario())
    assert value("qmtl_dependency_up", dependency="graph_store", kind="postgresql") == 1
    assert value("qmtl_dependency_up", dependency="refusing", kind="grpc") == 0


def test_bounded_answers_in_time_whatever_the_call_does() -> None:
    gate = threading.Event()

    async def scenario() -> tuple[object, object, object]:
        slow = await bounded(lambda: gate.wait(5), 0.05, "the store")
        fast = await bounded(lambda: 42, 1, "the store")
        broken = await bounded(lambda: 1 / 0, 1, "the store")
        gate.set()
        return slow, fast, broken

    slow, fast, broken = asyncio.run(scenario())
    assert slow == {"error": "the store did not answer within 0.05s"}
    assert fast == 42 and "ZeroDivisionError" in broken["error"]  # type: ignore[index]
