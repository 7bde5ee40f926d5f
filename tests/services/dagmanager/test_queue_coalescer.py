"""Group commit of topic creations: concurrent callers share one backend call."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from qmtl.services.dagmanager.queues import _Coalescer


class Backend:
    """Records each call's items; the first call blocks until released."""

    def __init__(self, fail_first: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_first = fail_first

    def __call__(self, items: list[str]) -> dict[str, str | None]:
        self.calls.append(list(items))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
            if self.fail_first:
                raise RuntimeError("broker unreachable")
        return {item: ("bad name" if item.startswith("bad") else None) for item in items}


def _wait_queued(coalescer: _Coalescer, n: int) -> None:
    for _ in range(1000):
        with coalescer._changed:
            if len(coalescer._pending) >= n:
                return
        threading.Event().wait(0.005)
    raise AssertionError(f"{n} callers never queued")


def test_callers_arriving_during_a_call_share_the_next_one() -> None:
    backend = Backend()
    coalescer = _Coalescer(backend)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(coalescer, ["a1", "a2"])
        assert backend.entered.wait(10)
        later = [pool.submit(coalescer, items) for items in (["b1"], ["c1", "bad-c"], ["b1", "d1"])]
        _wait_queued(coalescer, 3)
        backend.release.set()
        assert first.result(10) == {"a1": None, "a2": None}
        results = [f.result(10) for f in later]
    # Two backend calls, not four; the second holds every waiting caller's items once.
    assert len(backend.calls) == 2
    assert backend.calls[0] == ["a1", "a2"]
    assert sorted(backend.calls[1]) == ["b1", "bad-c", "c1", "d1"]
    # Each caller sees only its own items, with their own outcome.
    assert results == [{"b1": None}, {"c1": None, "bad-c": "bad name"}, {"b1": None, "d1": None}]


def test_a_failing_call_fails_every_caller_of_its_batch_and_only_them() -> None:
    backend = Backend(fail_first=True)
    coalescer = _Coalescer(backend)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(coalescer, ["a"])
        assert backend.entered.wait(10)
        second = pool.submit(coalescer, ["b"])
        _wait_queued(coalescer, 1)
        backend.release.set()
        with pytest.raises(RuntimeError, match="broker unreachable"):
            first.result(10)
        # The next batch runs on its own and succeeds.
        assert second.result(10) == {"b": None}
    assert coalescer(["c"]) == {"c": None}
    assert backend.calls == [["a"], ["b"], ["c"]]


def test_batches_stop_at_max_items_without_splitting_a_caller() -> None:
    backend = Backend()
    coalescer = _Coalescer(backend, max_items=3)
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(coalescer, ["a"])
        assert backend.entered.wait(10)
        later = [pool.submit(coalescer, items) for items in (["b1", "b2"], ["c1"], ["d1", "d2"])]
        _wait_queued(coalescer, 3)
        backend.release.set()
        assert first.result(10) == {"a": None}
        assert [f.result(10) for f in later] == [
            {"b1": None, "b2": None},
            {"c1": None},
            {"d1": None, "d2": None},
        ]
    # b1, b2, c1 fill a batch of 3; d's two items go in the next one.
    assert backend.calls == [["a"], ["b1", "b2", "c1"], ["d1", "d2"]]
