"""One policy for blocking work started from an event loop.

Every service serves ``/metrics`` and ``/health`` from the same loop that handles
requests, so a call that can wait (a database, a broker, a file, a drill's delay) runs
in a thread.  The one exception is decided by the caller from what its port declared
at construction (``local``: the call stays in this process and waits on nothing else)
and from the size of the job: such a call runs on the loop, where a thread hop and the
GIL hand-offs that come with it would cost more than the call itself -- but only while
the port is free.  Under :func:`~qmtl.foundation.sqldb.without_waiting` a busy port
raises :class:`~qmtl.foundation.sqldb.WouldBlock` at once, and the call runs in a
thread after all; whatever it did before the refusal must be safe to do again.

Nothing here looks at a backend's dialect or kind, or at drills: the port says whether
it is local, and a drill wrapper is not.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from qmtl.foundation.sqldb import WouldBlock, without_waiting

__all__ = ["InlineGate", "run_blocking"]

T = TypeVar("T")


class InlineGate:
    """Keeps one local port's small jobs on the loop when calls overlap.

    A job refused on the loop runs in a thread and holds the port for its whole run;
    the jobs that arrive meanwhile would find the port busy too and follow it into
    threads, one after another, each paying the hop and the GIL hand-offs, so under
    overlapping calls most jobs ended up in threads.  With a gate they wait on the
    loop (without holding it) until no job of theirs is in a thread, then run inline.
    One gate per port, shared by the calls that use it; loop-bound.
    """

    def __init__(self) -> None:
        self._threaded = 0
        self._idle: asyncio.Event | None = None

    async def wait_idle(self) -> None:
        if self._threaded and self._idle is not None:
            await self._idle.wait()

    def enter(self) -> None:
        if self._idle is None:
            self._idle = asyncio.Event()
        self._threaded += 1
        self._idle.clear()

    def leave(self) -> None:
        self._threaded -= 1
        if not self._threaded and self._idle is not None:
            self._idle.set()


async def run_blocking(
    fn: Callable[..., T],
    /,
    *args: Any,
    inline: bool = False,
    executor: Executor | None = None,
    gate: InlineGate | None = None,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` without holding the loop.

    ``inline`` (a local port, a small job): on the loop while the port is free.
    Otherwise in ``executor`` (the loop's default pool when None), with the caller's
    context, as :func:`asyncio.to_thread` does (spans started in ``fn`` keep their parent).
    ``gate``: the port's :class:`InlineGate`, so that an inline job first waits for the
    port's jobs that went to threads.
    """
    if inline:
        if gate is not None:
            await gate.wait_idle()
        try:
            with without_waiting():
                return fn(*args, **kwargs)
        except WouldBlock:
            pass  # busy: wait for it in a thread
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    threaded = asyncio.get_running_loop().run_in_executor(executor, call)
    if not inline or gate is None:
        return await threaded
    gate.enter()
    try:
        return await threaded
    finally:
        gate.leave()
