"""A hung PostgreSQL (its backend stopped with SIGSTOP: the socket stays open, nothing
answers) costs a caller its deadline, never its thread: the transaction fails with a
TimeoutError that says what happened, the connection is dropped, and the next call
works once the server answers again.  Only the backend serving the test's connection
is stopped, by its PID, and it is always continued."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from qmtl import devstack
from qmtl.foundation.sqldb import SqlDatabase

pytestmark = pytest.mark.integration


@pytest.fixture
def db(postgres: devstack.Postgres) -> Iterator[SqlDatabase]:
    database = SqlDatabase(postgres.new_database(), pool_size=1, timeout=1.0, query_deadline=1.0)
    yield database
    database.close()


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def in_thread(fn: Callable[[], Any], bound: float = 60.0) -> Any:
    """Run ``fn``; fail (instead of hanging the suite) if it has not returned by ``bound``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), "the call is still waiting on the hung server"
    if "error" in box:
        raise box["error"]
    return box["value"]


def backend_pid(db: SqlDatabase) -> int:
    return int(db.select("SELECT pg_backend_pid()")[0][0])


def test_a_transaction_on_a_hung_server_fails_at_its_deadline(db: SqlDatabase) -> None:
    stopped_pids: list[int] = []

    def hung_transaction() -> None:
        with db.txn() as cur:
            cur.execute("SELECT pg_backend_pid()")
            stopped_pids.append(int(cur.fetchone()[0]))
            os.kill(stopped_pids[0], signal.SIGSTOP)
            cur.execute("SELECT 1")

    try:
        with pytest.raises(TimeoutError, match="did not answer a transaction within 1 s"):
            in_thread(hung_transaction)
    finally:  # from this thread: a hung call must not leave the backend stopped
        for pid in stopped_pids:
            os.kill(pid, signal.SIGCONT)
    assert in_thread(lambda: db.select("SELECT 2")) == [(2,)]  # a new connection


def test_an_idle_connection_to_a_hung_backend_is_checked_out_and_replaced(
    db: SqlDatabase,
) -> None:
    """The pool checks an idle connection before handing it out; that check has a
    deadline too, and the pool then opens a fresh connection (a new backend)."""
    hung = backend_pid(db)
    with stopped(hung):
        assert in_thread(lambda: backend_pid(db)) != hung


def test_a_slow_query_within_the_deadline_is_left_alone(db: SqlDatabase) -> None:
    assert in_thread(lambda: db.select("SELECT 3 FROM pg_sleep(0.3)")) == [(3,)]
