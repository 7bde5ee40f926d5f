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

__all__ = ["run_blocking"]

T = TypeVar("T")


async def run_blocking(
    fn: Callable[..., T],
    /,
    *args: Any,
    inline: bool = False,
    executor: Executor | None = None,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)`` without holding the loop.

    ``inline`` (a local port, a small job): on the loop while the port is free.
    Otherwise in ``executor`` (the loop's default pool when None), with the caller's
    context, as :func:`asyncio.to_thread` does (spans started in ``fn`` keep their parent).
    """
    if inline:
        try:
            with without_waiting():
                return fn(*args, **kwargs)
        except WouldBlock:
            pass  # busy: wait for it in a thread
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor, call)
