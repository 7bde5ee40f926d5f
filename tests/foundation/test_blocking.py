"""run_blocking: a local port's small job on the loop while the port is free, in a
thread when it is busy or not local, with the caller's context either way."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from qmtl.foundation.blocking import run_blocking
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
