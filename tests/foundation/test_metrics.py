"""Shared metrics helpers: registration, labels, windows, pruning and the HTTP server."""

from __future__ import annotations

import math

import httpx
import pytest
from prometheus_client import Counter, Gauge

from qmtl.foundation import metrics as m


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_get_or_create_returns_same_collector() -> None:
    """Importing a metrics module twice must not raise 'Duplicated timeseries'."""
    a = m.counter("helpers_test_events_total", "doc", ["kind"])
    b = m.counter("helpers_test_events_total", "doc", ["kind"])
    assert a is b
    assert isinstance(a, Counter)


def test_get_or_create_refuses_type_or_label_conflicts() -> None:
    m.gauge("helpers_test_conflict", "doc")
    with pytest.raises(ValueError, match="already registered as Gauge"):
        m.counter("helpers_test_conflict", "doc")
    with pytest.raises(ValueError, match="labels"):
        m.gauge("helpers_test_conflict", "doc", ["x"])


def test_created_series_are_disabled() -> None:
    """`_created` samples would double the exposition; nothing reads them."""
    c = m.counter("helpers_test_created_total", "doc")
    c.inc()
    assert m.sample_value("helpers_test_created_created") is None
    assert m.sample_value("helpers_test_created_total") == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, m.UNSET), ("", m.UNSET), ("  ", m.UNSET), ("None", m.UNSET), ("unknown", m.UNSET),
     ("live", "live"), (42, "42")],
)  # fmt: skip
def test_normalize_label(value: object, expected: str) -> None:
    assert m.normalize_label(value) == expected


def test_normalize_label_bounded_vocabulary() -> None:
    assert m.normalize_label("live", allowed={"live", "backtest"}) == "live"
    assert m.normalize_label("weird", allowed={"live", "backtest"}) == m.UNSET


def test_quantile_window_exact_and_decaying() -> None:
    """p95 is exact over live samples and forgets samples older than the window."""
    clock = FakeClock()
    window = m.QuantileWindow(300, clock=clock)
    assert math.isnan(window.quantile(0.95))
    for v in range(1, 101):
        window.observe(v)
    assert window.quantile(0.95) == 95
    assert window.quantile(0.5) == 50
    clock.now += 200
    window.observe(1000)
    assert window.quantile(1.0) == 1000
    clock.now += 101  # the first 100 samples are now older than 300 s
    assert len(window) == 1
    assert window.quantile(0.95) == 1000
    clock.now += 300
    assert math.isnan(window.quantile(0.95))


def test_quantile_window_bounded_memory() -> None:
    window = m.QuantileWindow(300, max_samples=10, clock=FakeClock())
    for v in range(1000):
        window.observe(v)
    assert len(window) == 10
    assert window.quantile(0.0) == 990


def test_p95_gauge_reads_window_at_scrape_time() -> None:
    clock = FakeClock()
    window = m.QuantileWindow(300, clock=clock)
    m.p95_gauge("helpers_test_latency_p95", "doc", window)
    assert math.isnan(m.sample_value("helpers_test_latency_p95"))
    for v in (10, 20, 300):
        window.observe(v)
    assert m.sample_value("helpers_test_latency_p95") == 300


def test_bounded_series_drops_oldest_members() -> None:
    """Only the newest `keep` run ids of a world keep their series."""
    runs = m.counter("helpers_test_runs_total", "doc", ["world_id", "run_id"])
    bounded = m.BoundedSeries(keep=2)
    for run in ("r1", "r2", "r3"):
        runs.labels("w", run).inc()
        bounded.track("w", run, runs, ("w", run))
    runs.labels("other", "r1").inc()
    bounded.track("other", "r1", runs, ("other", "r1"))
    assert m.sample_value("helpers_test_runs_total", {"world_id": "w", "run_id": "r1"}) is None
    assert m.sample_value("helpers_test_runs_total", {"world_id": "w", "run_id": "r3"}) == 1
    assert m.sample_value("helpers_test_runs_total", {"world_id": "other", "run_id": "r1"}) == 1
    assert bounded.members("w") == ["r2", "r3"]


def test_remove_series_is_idempotent() -> None:
    g = m.gauge("helpers_test_resident", "doc", ["node_id"])
    g.labels("a").set(1)
    assert m.remove_series(g, "a") is True
    assert m.remove_series(g, "a") is False


def test_metrics_server_serves_global_registry_and_stops() -> None:
    g: Gauge = m.gauge("helpers_test_served", "doc")
    g.set(7)
    server = m.start_metrics_server(port=0)
    try:
        body = httpx.get(server.url, timeout=5).text
        assert "helpers_test_served 7.0" in body
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=2)


def test_metrics_server_port_in_use_is_clear() -> None:
    server = m.start_metrics_server(port=0)
    try:
        with pytest.raises(m.MetricsServerError, match="already in use"):
            m.start_metrics_server(port=server.port)
    finally:
        server.stop()


def test_nonzero_series_and_clear_series() -> None:
    """Operator resets: list the series above zero, then drop them all."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    hits = m.counter("helpers_test_hits_total", "doc", ["node_id"], registry=registry)
    hits.labels("a").inc(2)
    hits.labels("b")  # exported at 0, not a hit
    assert m.nonzero_series(hits) == [{"labels": {"node_id": "a"}, "value": 2.0}]
    assert m.clear_series(hits) == 2
    assert m.nonzero_series(hits) == []
    assert registry.get_sample_value("helpers_test_hits_total", {"node_id": "a"}) is None
