"""Prove that an event loop does not wait: hold a transaction from another thread, and
measure the longest gap between the loop's turns meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

__all__ = ["LoopWatch", "held_elsewhere"]


@contextmanager
def held_elsewhere(
    open_txn: Callable[[], AbstractContextManager[Any]],
) -> Iterator[threading.Event]:
    """Another thread enters ``open_txn()`` and stays inside until the yielded event is
    set (or 10 s pass); the block runs once it is inside."""
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with open_txn():
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold, name="held-elsewhere")
    holder.start()
    try:
        if not inside.wait(10):
            raise TimeoutError("the other thread never entered its transaction")
        yield release
    finally:
        release.set()
        holder.join(10)


class LoopWatch:
    """``async with LoopWatch() as watch:`` -- ``watch.worst`` is the longest time, in
    seconds, the running loop went without a turn inside the block (it ticks every 10 ms
    and has ticked once before the block starts)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._done = False
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.monotonic()
        while not self._done:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.worst = max(self.worst, now - last)
            last = now

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._done = True
        assert self._task is not None
        await self._task
