"""run_blocking: a local port's small job on the loop while the port is free, in a
thread when it is busy or not local, with the caller's context either way."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from qmtl.foundation.blocking import InlineGate, run_blocking
from qmtl.foundation.sqldb import SqlDatabase

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def _write(db: SqlDatabase, calls: list[tuple[str, str]]) -> str:
    """One transaction; records the thread it ran on and the caller's context."""
    calls.append((threading.current_thread().name, request_id.get()))
    with db.txn() as cur:
        cur.execute("INSERT INTO t VALUES (1)")
    return "written"


def _db(tmp_path: Path) -> SqlDatabase:
    db = SqlDatabase(f"sqlite:{tmp_path / 'b.db'}")
    db.create(("CREATE TABLE IF NOT EXISTS t (x INTEGER)",))
    return db


def test_inline_runs_on_the_loop_while_the_port_is_free(tmp_path: Path) -> None:
    db, calls = _db(tmp_path), []

    async def main() -> str:
        request_id.set("r1")
        return await run_blocking(_write, db, calls, inline=True)

    assert asyncio.run(main()) == "written"
    assert calls == [("MainThread", "r1")]
    db.close()


def test_a_busy_port_sends_the_call_to_a_thread_which_runs_it_again(tmp_path: Path) -> None:
    db, calls = _db(tmp_path), []
    pool = ThreadPoolExecutor(1, thread_name_prefix="port")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.txn():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)

    async def main() -> str:
        request_id.set("r2")
        call = asyncio.ensure_future(run_blocking(_write, db, calls, inline=True, executor=pool))
        while len(calls) < 2:  # refused on the loop, then waiting in the pool
            await asyncio.sleep(0)
        release.set()
        return await call

    assert asyncio.run(main()) == "written"
    holder.join()
    assert [name for name, _ in calls] == ["MainThread", "port_0"]
    assert {ctx for _, ctx in calls} == {"r2"}
    assert db.select("SELECT COUNT(*) FROM t")[0][0] == 1, "the refused call wrote nothing"
    pool.shutdown()
    db.close()


def test_without_inline_the_call_never_runs_on_the_loop(tmp_path: Path) -> None:
    db, calls = _db(tmp_path), []

    async def main() -> str:
        request_id.set("r3")
        return await run_blocking(_write, db, calls)

    assert asyncio.run(main()) == "written"
    ((thread, context),) = calls
    assert thread != "MainThread" and context == "r3"
    db.close()


def test_with_a_gate_a_job_waits_for_the_one_in_a_thread_and_runs_inline(tmp_path: Path) -> None:
    """Without the gate the second job finds the port busy (the first holds it in its
    thread) and follows it into a thread: under overlapping calls most jobs did."""
    assert "MainThread" in _two_overlapping_jobs(tmp_path, InlineGate())
    assert "MainThread" not in _two_overlapping_jobs(tmp_path, None)


def _two_overlapping_jobs(tmp_path: Path, gate: InlineGate | None) -> list[str]:
    """Another user holds the port, so job 1 is refused on the loop and waits in a
    thread; job 2 comes while job 1 is there.  The threads the two writes were made on."""
    db = _db(tmp_path / ("gated" if gate else "ungated"))
    attempts: list[str] = []
    written: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def job() -> None:
        attempts.append(threading.current_thread().name)
        with db.txn() as cur:
            cur.execute("INSERT INTO t VALUES (1)")
        written.append(threading.current_thread().name)

    def hold() -> None:
        with db.txn():
            holding.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()

    async def main() -> None:
        first = asyncio.create_task(run_blocking(job, inline=True, gate=gate))
        while len(attempts) < 2:  # refused on the loop, then waiting in its thread
            await asyncio.sleep(0.01)
        second = asyncio.create_task(run_blocking(job, inline=True, gate=gate))
        await asyncio.sleep(0.05)  # job 2 is refused too, or waits at the gate
        release.set()
        await asyncio.gather(first, second)

    asyncio.run(main())
    holder.join()
    assert len(written) == 2
    return written
