"""Shared metrics helpers: registration, labels, windows, pruning and the HTTP server."""

from __future__ import annotations

import math

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from qmtl.foundation import catalogue
from qmtl.foundation import metrics as m
from qmtl.foundation.catalogue import MetricSpec
from qmtl.testing.metrics import Snapshot


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(
    name: str, kind: str = "counter", labels: tuple[str, ...] = (), free: tuple[str, ...] = ()
) -> MetricSpec:
    return MetricSpec(name, kind, labels, ("any",), "doc", free)


def test_create_builds_from_the_catalogue() -> None:
    """Name, type, labels and help come from the catalogue entry."""
    registry = CollectorRegistry()
    hits = m.create("cross_context_cache_hit_total", registry=registry)
    assert isinstance(hits, Counter)
    assert tuple(hits._labelnames) == catalogue.CONTEXT_LABELS
    assert hits._documentation == catalogue.spec("cross_context_cache_hit_total").help
    latency = m.create("gateway_e2e_latency_ms", registry=registry)
    assert tuple(latency._upper_bounds[:-1]) == m.MS_BUCKETS


def test_a_metric_is_created_once() -> None:
    """Defining a name twice raises, as prometheus_client does (no silent get-or-create)."""
    registry = CollectorRegistry()
    m.create("diff_requests_total", registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        m.create("diff_requests_total", registry=registry)
    import qmtl.services.dagmanager.metrics  # noqa: F401 - defines it on the global registry

    with pytest.raises(ValueError, match="Duplicated timeseries"):
        m.create("diff_requests_total")
    with pytest.raises(KeyError, match="not in the metric catalogue"):
        m.create("no_such_metric_total", registry=registry)


def test_created_series_are_disabled() -> None:
    """`_created` samples would double the exposition; nothing reads them."""
    registry = CollectorRegistry()
    c = m.create(spec("helpers_test_created_total"), registry=registry)
    c.inc()
    assert registry.get_sample_value("helpers_test_created_created") is None
    assert registry.get_sample_value("helpers_test_created_total") == 1


def test_label_budget_caps_client_values_and_counts_drops() -> None:
    """Past the cap, free labels become __other__ and the drop is counted."""
    registry = CollectorRegistry()
    entry = spec("helpers_test_budget_total", labels=("world_id", "phase"), free=("world_id",))
    metric = m.create(entry, registry=registry)
    budget = m.LabelBudget(metric, entry, cap=3)
    dropped = Snapshot("qmtl_dropped_label_values_total")
    for i in range(10):
        budget.labels(f"w{i}", "freeze").inc()
    worlds = {s.labels["world_id"] for f in metric.collect() for s in f.samples}
    assert worlds == {"w0", "w1", "w2", m.OTHER}
    assert (
        registry.get_sample_value(
            "helpers_test_budget_total", {"world_id": m.OTHER, "phase": "freeze"}
        )
        == 7
    )
    assert dropped.delta("qmtl_dropped_label_values_total", metric="helpers_test_budget_total") == 7
    assert budget.forget(lambda key: key[0] == "w1") == 1
    budget.labels("w9", "unfreeze").inc()  # the freed slot is reused
    assert (
        registry.get_sample_value(
            "helpers_test_budget_total", {"world_id": "w9", "phase": "unfreeze"}
        )
        == 1
    )


def test_value_budget_bounds_one_label_across_metrics() -> None:
    budget = m.ValueBudget("helpers_test_world", cap=2)
    assert [budget.value(w) for w in ("a", "b", "c", "a")] == ["a", "b", m.OTHER, "a"]
    budget.forget("b")
    assert budget.value("c") == "c"


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
    registry = CollectorRegistry()
    m.bind_p95(m.create(spec("helpers_test_latency_p95", "gauge"), registry=registry), window)
    assert math.isnan(registry.get_sample_value("helpers_test_latency_p95"))
    for v in (10, 20, 300):
        window.observe(v)
    assert registry.get_sample_value("helpers_test_latency_p95") == 300


def test_bounded_series_drops_oldest_members() -> None:
    """Only the newest `keep` run ids of a world keep their series."""
    registry = CollectorRegistry()
    runs = m.create(
        spec("helpers_test_runs_total", labels=("world_id", "run_id")), registry=registry
    )
    bounded = m.BoundedSeries(keep=2)
    for run in ("r1", "r2", "r3"):
        runs.labels("w", run).inc()
        bounded.track("w", run, runs, ("w", run))
    runs.labels("other", "r1").inc()
    bounded.track("other", "r1", runs, ("other", "r1"))
    value = registry.get_sample_value
    assert value("helpers_test_runs_total", {"world_id": "w", "run_id": "r1"}) is None
    assert value("helpers_test_runs_total", {"world_id": "w", "run_id": "r3"}) == 1
    assert value("helpers_test_runs_total", {"world_id": "other", "run_id": "r1"}) == 1
    assert bounded.members("w") == ["r2", "r3"]


def test_remove_series_is_idempotent() -> None:
    g = m.create(spec("helpers_test_resident", "gauge", ("node_id",)), registry=CollectorRegistry())
    g.labels("a").set(1)
    assert m.remove_series(g, "a") is True
    assert m.remove_series(g, "a") is False


def test_metrics_server_serves_a_registry_and_stops() -> None:
    registry = CollectorRegistry()
    g: Gauge = m.create(spec("helpers_test_served", "gauge"), registry=registry)
    g.set(7)
    server = m.start_metrics_server(port=0, registry=registry)
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
    registry = CollectorRegistry()
    hits = m.create(spec("helpers_test_hits_total", labels=("node_id",)), registry=registry)
    hits.labels("a").inc(2)
    hits.labels("b")  # exported at 0, not a hit
    assert m.nonzero_series(hits) == [{"labels": {"node_id": "a"}, "value": 2.0}]
    assert m.clear_series(hits) == 2
    assert m.nonzero_series(hits) == []
    assert registry.get_sample_value("helpers_test_hits_total", {"node_id": "a"}) is None
