"""Event recorders against a real ILP/HTTP peer, a dead port, a failing server, and SQLite."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from qmtl import devstack
from qmtl.runtime.io import QuestDBRecorder, SQLiteRecorder, open_recorder
from qmtl.runtime.io.recorder import safe_name
from qmtl.runtime.sdk import ProcessingNode, Runner, Strategy, StreamInput, metrics
from qmtl.testing.metrics import value
from qmtl.testing.receivers import IlpReceiver, parse_ilp


@pytest.fixture(autouse=True)
def clean() -> None:
    metrics.reset_metrics()


def test_every_row_arrives_in_few_requests() -> None:
    with IlpReceiver() as rx:
        recorder = QuestDBRecorder(rx.conf, batch_size=2000)
        for i in range(5000):
            recorder.record(
                "prices", 1_700_000_000 + i, {"price": 100.0 + i, "qty": i, "venue": "x"}
            )
        recorder.close()
        rows = rx.wait_for_rows(5000, timeout=10)
        assert rx.requests <= 5, "rows must be batched, never a request per row"
    assert [r.columns["qty"] for r in rows] == list(range(5000))
    assert rows[0] == parse_ilp('prices price=100.0,qty=0i,venue="x" 1700000000000000000')[0]
    assert recorder.rows_written == 5000 and recorder.rows_failed == 0
    assert value("event_recorder_errors_total", recorder="questdb") == 0


def test_names_and_values_are_escaped() -> None:
    with IlpReceiver() as rx:
        recorder = QuestDBRecorder(rx.conf)
        recorder.record(
            'my table,"x"=1', 1.5, {"bad column,=": 'say "hi", a=b\\c', "nested": {"a": [1, 2]}}
        )
        recorder.close()
        (row,) = rx.wait_for_rows(1, timeout=10)
    assert row.table == safe_name('my table,"x"=1') == "my_table__x__1"
    assert row.columns == {"bad_column": 'say "hi", a=b\\c', "nested": '{"a": [1, 2]}'}
    assert row.timestamp_ns == 1_500_000_000


class StuckReceiver(IlpReceiver):
    """An ILP endpoint that holds every write until released: storage that hangs."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.arrived = threading.Event()

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        self.arrived.set()
        self.release.wait(30)
        return super().handle(path, body, headers)


def test_record_never_waits_for_storage() -> None:
    """With the first write stuck inside the server, record() still returns every time."""
    with StuckReceiver() as rx:
        recorder = QuestDBRecorder(rx.conf, batch_size=10, flush_interval=0.01)
        recorder.record("t", 0, {"v": 0})
        assert rx.arrived.wait(10), "the first batch reached the (stuck) server"
        for i in range(1, 300):
            recorder.record("t", i, {"v": i})  # would hang here if record() waited
        assert recorder.rows_written == 0, "nothing was persisted yet: the server is stuck"
        rx.release.set()
        recorder.close()
        assert len(rx.wait_for_rows(300, timeout=30)) == 300


def test_dead_port_counts_every_row() -> None:
    port = devstack.free_port()
    recorder = QuestDBRecorder(f"http::addr=127.0.0.1:{port};", retries=2, backoff_seconds=0.01)
    for i in range(300):
        recorder.record("t", i, {"v": i})
    recorder.close()
    assert recorder.rows_failed == 300 and recorder.rows_written == 0
    assert value("event_recorder_errors_total", recorder="questdb") == 300
    assert "Connection refused" in (recorder.last_error or "")


def test_server_errors_are_retried_then_counted() -> None:
    with IlpReceiver(fail_with=500) as rx:
        recorder = QuestDBRecorder(rx.conf + "retry_timeout=0;", retries=2, backoff_seconds=0.01)
        for i in range(10):
            recorder.record("t", i, {"v": i})
        recorder.close()
        assert rx.requests >= 3, "one attempt plus two retries"
    assert recorder.rows_failed == 10
    assert value("event_recorder_errors_total", recorder="questdb") == 10


def test_full_queue_drops_and_counts() -> None:
    recorder = QuestDBRecorder(
        f"http::addr=127.0.0.1:{devstack.free_port()};", max_queue=5, retries=0, flush_interval=5
    )
    for i in range(50):
        recorder.record("t", i, {"v": i})
    recorder.close()
    assert recorder.rows_failed == 50
    assert value("event_recorder_errors_total", recorder="questdb") == 50


def test_sqlite_recorder_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    recorder = open_recorder(f"sqlite:{path}")
    assert isinstance(recorder, SQLiteRecorder)
    for i in range(100):
        recorder.record('odd "name"', float(i), {"v": i})
    recorder.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute('SELECT ts_ns, payload FROM "odd__name" ORDER BY ts_ns').fetchall()
    assert len(rows) == 100 and rows[3] == (3_000_000_000, '{"v": 3}')


def test_stream_input_payloads_are_recorded_during_a_run() -> None:
    with IlpReceiver() as rx:
        recorder = QuestDBRecorder(rx.conf)

        class Rec(Strategy):
            def setup(self) -> None:
                self.src = StreamInput(
                    tags=["btc"], interval=60, period=2, event_service=recorder, name="btc_ticks"
                )
                self.add_nodes(
                    self.src, ProcessingNode(input=self.src, compute_fn=lambda v: 1, period=2)
                )

        strategy = Rec()
        strategy.setup()
        Runner.offline(
            strategy, data={strategy.src: [(float(i), {"price": i}) for i in range(250)]}
        )
        recorder.close()
        rows = rx.wait_for_rows(250, timeout=10)
    assert {r.table for r in rows} == {"btc_ticks"}
    assert sorted(r.columns["price"] for r in rows) == list(range(250))


def test_bad_recorder_spec() -> None:
    with pytest.raises(ValueError, match="use sqlite:PATH"):
        open_recorder("nonsense")
