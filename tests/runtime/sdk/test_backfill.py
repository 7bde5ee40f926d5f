"""BackfillEngine: retries with backoff, metrics and structured log lines."""

from __future__ import annotations

import logging

import pytest

from qmtl.runtime.sdk import BackfillEngine, BackfillError, StreamInput
from qmtl.testing.metrics import scrape


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, start: float, end: float) -> list[tuple[float, float]]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"upstream down (call {self.calls})")
        return [(start + 60 * i, float(i)) for i in range(5)]


def labels(stream: StreamInput) -> dict[str, str]:
    return {"node_id": stream.node_id, "interval": "60"}


def test_fails_once_then_succeeds(metrics_url: str, caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    engine = BackfillEngine(max_retries=3, backoff_seconds=0.5, sleep=sleeps.append)
    stream = StreamInput(tags=["once"], interval=60, history_provider=Flaky(1))
    with caplog.at_level(logging.INFO, logger="qmtl.backfill"):
        rows = engine.run(stream, 1000, 2000)
    assert len(rows) == 5 and sleeps == [0.5]
    m = scrape(metrics_url)
    assert m.get_value("backfill_retry_total", **labels(stream)) == 1
    assert m.get_value("backfill_failure_total", **labels(stream)) is None
    assert m.get_value("backfill_last_timestamp", **labels(stream)) == 1240
    assert m.get_value("backfill_jobs_in_progress") == 0
    events = [r.getMessage().split()[0] for r in caplog.records]
    assert events == ["backfill.start", "backfill.retry", "backfill.complete"]
    assert f"node_id={stream.node_id}" in caplog.records[1].getMessage()


def test_always_failing_job(metrics_url: str, caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    engine = BackfillEngine(
        max_retries=2, backoff_seconds=0.1, backoff_factor=3, sleep=sleeps.append
    )
    stream = StreamInput(tags=["never"], interval=60, history_provider=Flaky(100))
    with (
        caplog.at_level(logging.INFO, logger="qmtl.backfill"),
        pytest.raises(BackfillError, match="after 3 attempts"),
    ):
        engine.run(stream, 0, 100)
    assert sleeps == pytest.approx([0.1, 0.3])
    m = scrape(metrics_url)
    assert m.get_value("backfill_retry_total", **labels(stream)) == 2
    assert m.get_value("backfill_failure_total", **labels(stream)) == 1
    assert m.get_value("backfill_jobs_in_progress") == 0
    assert caplog.records[-1].getMessage().startswith("backfill.failed")


def test_jobs_in_progress_while_running(metrics_url: str) -> None:
    seen = []

    def fetch(start: float, end: float) -> list:
        seen.append(scrape(metrics_url).get_value("backfill_jobs_in_progress"))
        return []

    BackfillEngine().run(StreamInput(tags=["x"], interval=60, history_provider=fetch), 0, 1)
    assert seen == [1]


def test_backoff_is_capped() -> None:
    engine = BackfillEngine(backoff_seconds=1, backoff_factor=10, max_backoff_seconds=5)
    assert [engine.delay(i) for i in (1, 2, 3)] == [1, 5, 5]
