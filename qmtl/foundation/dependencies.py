"""Dependency probes: is each backend a service relies on answering, right now?

A stopped or stuck backend (PostgreSQL, a Kafka broker, the DAG Manager, the
WorldService) does not refuse connections: it accepts them and never answers, so calls
into it wait for their own deadlines and nothing says which dependency is the problem.
:class:`DependencyProbes` checks each dependency on a schedule, each check on its own
thread with a deadline, and publishes

* ``qmtl_dependency_up{dependency, kind}`` -- 1 when the last check answered in time,
  0 when it failed or is still waiting (a check that hangs is never stacked up);
* ``qmtl_dependency_probe_seconds{dependency, kind}`` -- how long the last check took
  (the time waited so far, while one hangs),

which the ``*Unresponsive`` alerts read, and :meth:`DependencyProbes.report` for
``/status``, which then never waits on a dependency itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from qmtl.foundation import metrics as m
from qmtl.foundation.blocking import run_blocking

__all__ = ["Check", "DependencyProbes", "bounded", "qmtl_dependency_up"]

log = logging.getLogger(__name__)
T = TypeVar("T")

qmtl_dependency_up = m.create("qmtl_dependency_up")
qmtl_dependency_probe_seconds = m.create("qmtl_dependency_probe_seconds")

#: A check: a blocking callable (run on the probe's own thread) or a coroutine function
#: (run on the event loop); it succeeds by returning anything but ``False``.
Check = Callable[[], Any]


@dataclass
class _Probe:
    name: str
    kind: str
    check: Check
    is_async: bool
    pool: ThreadPoolExecutor | None
    running: Future[Any] | None = None
    started: float = 0.0
    ok: bool | None = None
    seconds: float = 0.0
    error: str | None = None
    checked_at: float = 0.0


class DependencyProbes:
    """Checks of one process's dependencies, every ``interval`` s, each within ``deadline`` s."""

    def __init__(self, *, interval: float = 5.0, deadline: float = 2.0) -> None:
        self.interval = interval
        self.deadline = deadline
        self._probes: dict[str, _Probe] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopped = threading.Event()

    def add(self, name: str, kind: str, check: Check) -> None:
        """Watch ``name`` (a backend of ``kind``: postgresql, sqlite, kafka, grpc, http)."""
        is_async = asyncio.iscoroutinefunction(check)
        pool = None if is_async else ThreadPoolExecutor(1, thread_name_prefix=f"probe-{name}")
        self._probes[name] = _Probe(name, kind, check, is_async, pool)

    # -- checking --------------------------------------------------------------------------
    async def check_all(self) -> None:
        """One round: every dependency checked at once, each within the deadline."""
        await asyncio.gather(*(self._check(p) for p in self._probes.values()))

    async def _check(self, probe: _Probe) -> None:
        now = time.monotonic()
        if probe.running is not None and not probe.running.done():
            waited = now - probe.started
            self._record(probe, False, waited, f"no answer for {waited:.0f}s (still waiting)")
            return
        probe.started = now
        try:
            if probe.is_async:
                outcome = await asyncio.wait_for(probe.check(), self.deadline)
            else:
                assert probe.pool is not None
                probe.running = probe.pool.submit(probe.check)
                outcome = await asyncio.wait_for(asyncio.wrap_future(probe.running), self.deadline)
        except TimeoutError:
            waited = time.monotonic() - probe.started
            self._record(probe, False, waited, f"no answer within {self.deadline:g}s")
            return
        except Exception as exc:
            waited = time.monotonic() - probe.started
            self._record(probe, False, waited, f"{type(exc).__name__}: {exc}"[:300])
            return
        waited = time.monotonic() - probe.started
        if outcome is False:
            self._record(probe, False, waited, "the check reported the backend unhealthy")
        else:
            self._record(probe, True, waited, None)

    def _record(self, probe: _Probe, ok: bool, seconds: float, error: str | None) -> None:
        if probe.ok is not False and not ok:
            log.warning("dependency %s (%s) is not answering: %s", probe.name, probe.kind, error)
        elif probe.ok is False and ok:
            log.info("dependency %s (%s) answers again", probe.name, probe.kind)
        probe.ok, probe.seconds, probe.error = ok, seconds, error
        probe.checked_at = time.time()
        qmtl_dependency_up.labels(probe.name, probe.kind).set(1 if ok else 0)
        qmtl_dependency_probe_seconds.labels(probe.name, probe.kind).set(round(seconds, 4))

    async def run(self) -> None:
        while True:
            try:
                await self.check_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the probe loop die
                log.warning("dependency probes failed: %s", exc)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Check on the running event loop (services built on asyncio)."""
        self._task = asyncio.create_task(self.run(), name="dependency-probes")

    def start_thread(self) -> None:
        """Check from a thread of their own (services whose loop belongs to the server)."""

        def rounds() -> None:
            while not self._stopped.is_set():
                try:
                    asyncio.run(self.check_all())
                except Exception as exc:  # never let the probe thread die
                    log.warning("dependency probes failed: %s", exc)
                self._stopped.wait(self.interval)

        threading.Thread(target=rounds, name="dependency-probes", daemon=True).start()

    async def stop(self) -> None:
        self.stop_thread()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def stop_thread(self) -> None:
        self._stopped.set()
        for probe in self._probes.values():
            if probe.pool is not None:
                probe.pool.shutdown(wait=False, cancel_futures=True)

    # -- reporting -------------------------------------------------------------------------
    def report(self) -> dict[str, dict[str, Any]]:
        """What ``/status`` shows: each dependency's last check, without checking again."""
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for probe in self._probes.values():
            entry: dict[str, Any] = {
                "kind": probe.kind,
                "ok": probe.ok,
                "seconds": round(probe.seconds, 3),
                "checked_at": probe.checked_at or None,
            }
            if probe.running is not None and not probe.running.done():
                entry["ok"] = False
                entry["error"] = f"no answer for {now - probe.started:.0f}s (still waiting)"
            elif probe.error:
                entry["error"] = probe.error
            out[probe.name] = entry
        return out

    def slow(self) -> list[str]:
        """Names of the dependencies that did not answer their last check."""
        return [name for name, entry in self.report().items() if entry["ok"] is False]


async def bounded(
    call: Callable[[], T] | Callable[[], Awaitable[T]], seconds: float, what: str
) -> T | dict[str, str]:
    """Run ``call`` (blocking: on a thread) but wait at most ``seconds`` for it.

    For ``/status``: a slow dependency yields ``{"error": ...}`` naming ``what`` instead of
    holding the answer (the call itself goes on until its own deadline).
    """
    try:
        if asyncio.iscoroutinefunction(call):
            return await asyncio.wait_for(call(), seconds)  # type: ignore[no-any-return]
        return await asyncio.wait_for(run_blocking(call), seconds)  # type: ignore[arg-type]
    except TimeoutError:
        return {"error": f"{what} did not answer within {seconds:g}s"}
    except Exception as exc:
        return {"error": f"{what}: {type(exc).__name__}: {exc}"[:300]}
