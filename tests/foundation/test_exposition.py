"""The fast /metrics renderer writes exactly what prometheus_client writes, and is served."""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder
from prometheus_client.exposition import generate_latest as library_text
from prometheus_client.openmetrics import exposition as om
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from qmtl.foundation import exposition
from qmtl.foundation import metrics as qm

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


class _Custom:
    """Families a custom collector can yield: timestamps, units, gauge histograms, colons."""

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily("custom_jobs", "Jobs\nwith a \\ newline.", labels=["queue"])
        counter.add_metric(["a:b"], 3, timestamp=1700000000.25)
        counter.add_metric(['quote"d'], 1e21)
        yield counter
        gauge = GaugeMetricFamily("custom_temp", "Temperature.", labels=["room"], unit="celsius")
        gauge.add_metric(["lab"], -3.5)
        gauge.add_metric(["server"], math.inf)
        gauge.add_metric(["void"], math.nan)
        yield gauge
        yield GaugeHistogramMetricFamily(
            "custom_queue_age", "Age.", buckets=[("1.0", 2), ("+Inf", 5)], gsum_value=7
        )
        colon = GaugeMetricFamily("level:custom:rate5m", "A recording-rule shaped name.")
        colon.add_metric([], 0.1)
        yield colon


class _Overriding(Counter):
    """A subclass that changes what it collects: the renderer must ask it, not its children."""

    def collect(self) -> list[Metric]:
        family = CounterMetricFamily("overriding", "Counter with its own collect().", labels=["k"])
        family.add_metric(["from-collect"], 42)
        return [family]


def rich_registry(created: bool) -> CollectorRegistry:
    import prometheus_client

    if created:
        prometheus_client.enable_created_metrics()
    try:
        registry = CollectorRegistry()
        requests = Counter("req", "Requests.", ["path", "code"], registry=registry)
        requests.labels("/a", "200").inc(3)
        requests.labels('/we"ird\\path\nx', "500").inc()
        requests.labels("/ünïcode", "404").inc(1, exemplar={"trace_id": "abc123"})
        Counter("plain_total", "No labels.", registry=registry).inc(2)
        Gauge("temp", "Gauge.", registry=registry).set(1234567.0)
        latency = Histogram(
            "latency_ms", "Latency.", ["op"], buckets=(1, 150, 10000), registry=registry
        )
        latency.labels("diff").observe(3, exemplar={"trace_id": "0af7651916cd43dd"})
        latency.labels("diff").observe(20000)
        Summary("size_bytes", "Summary.", registry=registry).observe(512)
        Info("build", "Build info.", registry=registry).info({"version": "1.2", "commit": "x"})
        Enum("state", "Enum.", states=["a", "b"], registry=registry).state("b")
        registry.register(_Custom())
        # Labelled families of every kind, read child by child on the fast path.
        pools = Gauge("pool_size", "Gauge.", ["zone", "pool"], registry=registry)
        pools.labels("eu", "b").set(-0.0)
        pools.labels("eu", "a").set(3.25)
        pools.labels("us", "a").set_function(lambda: 7)
        # Either side of where Go's formatting switches to exponents, and what is not finite
        # (a family without set_function children: the renderer reads each child's value).
        levels = Gauge("level", "Gauge.", ["k"], registry=registry)
        for key, value in [("b", 999999.5), ("c", 1e6), ("d", 1234567.0), ("e", -2e6),
                           ("f", 1e-7), ("g", math.inf), ("h", -math.inf), ("i", math.nan)]:  # fmt: skip
            levels.labels(key).set(value)
        events = Counter("events", "A labelled counter past 1e6.", ["k"], registry=registry)
        events.labels("big").inc(2_500_000, exemplar={"trace_id": "ff"})
        events.labels("small").inc(0.5)
        Enum("phase", "Enum.", ["world"], states=["frozen", "live"], registry=registry).labels(
            "w1"
        ).state("live")
        Info("node", "Info.", ["zone"], registry=registry).labels("eu").info({"arch": "x86"})
        Summary("wait_seconds", "Summary.", ["queue"], registry=registry).labels("q").observe(2)
        Counter("unused", "A labelled family with no child yet.", ["k"], registry=registry)
        _Overriding("overriding", "Counter with its own collect().", ["k"], registry=registry)
        registry.set_target_info({"service": "qmtl-test"})
        return registry
    finally:
        prometheus_client.disable_created_metrics()


@pytest.mark.parametrize("created", [False, True], ids=["created-off", "created-on"])
def test_openmetrics_is_byte_for_byte_the_librarys(created: bool) -> None:
    registry = rich_registry(created)
    ours = exposition.openmetrics_latest(registry)
    assert ours == om.generate_latest(registry, escaping=om.UNDERSCORES, version="1.0.0")
    assert b'# {trace_id="0af7651916cd43dd"} 3.0' in ours  # the exemplars are there
    families = {f.name for f in text_string_to_metric_families(ours.decode())}
    assert {"req", "latency_ms", "custom_queue_age", "level:custom:rate5m"} <= families


@pytest.mark.parametrize("created", [False, True], ids=["created-off", "created-on"])
def test_text_format_is_byte_for_byte_the_librarys(created: bool) -> None:
    registry = rich_registry(created)
    assert exposition.text_latest(registry) == library_text(registry)


def test_a_value_held_as_an_int_is_written_as_the_library_writes_it() -> None:
    """The library's value holders store floats, but its formatter takes any number; the
    renderer's float shortcut must not turn a stored 7 into "7" where the library says "7.0"."""
    registry = CollectorRegistry()
    gauge = Gauge("held", "Gauge.", ["k"], registry=registry)
    gauge.labels("a").set(1)
    gauge.labels("a")._value._value = 7  # as a value class storing ints would
    assert b'held{k="a"} 7.0' in exposition.openmetrics_latest(registry)
    assert exposition.openmetrics_latest(registry) == om.generate_latest(
        registry, escaping=om.UNDERSCORES, version="1.0.0"
    )
    assert exposition.text_latest(registry) == library_text(registry)


@pytest.mark.parametrize(
    "accept, fast",
    [
        (PROMETHEUS_ACCEPT, exposition.openmetrics_latest),
        ("application/openmetrics-text", exposition.openmetrics_latest),
        ("text/plain;version=0.0.4", exposition.text_latest),
        ("", exposition.text_latest),
        (None, exposition.text_latest),
        ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8", None),
        ("application/openmetrics-text;version=2.0.0", None),
        ("text/plain;version=1.0.0;escaping=dots", None),
    ],
)
def test_negotiation_is_the_librarys_and_only_the_default_escaping_is_fast(
    accept: str | None, fast: object
) -> None:
    encoder, content_type = exposition.encoder_for(accept)
    library, library_type = choose_encoder(accept or "")
    assert content_type == library_type
    if fast is None:
        assert encoder not in (exposition.openmetrics_latest, exposition.text_latest)
        assert (encoder.func, encoder.keywords) == (library.func, library.keywords)  # type: ignore[attr-defined]
    else:
        assert encoder is fast
    registry = rich_registry(False)
    assert encoder(registry) == library(registry)


def test_the_fast_path_runs_only_on_verified_library_versions() -> None:
    from importlib.metadata import version

    assert exposition.fast_path_supported(version("prometheus_client")), (
        "the installed prometheus_client is not in VERIFIED_LIBRARY_VERSIONS: run this "
        "module's byte-equality tests against it, then add it"
    )
    assert exposition.FAST_PATH
    assert not exposition.fast_path_supported("0.27.0")
    assert not exposition.fast_path_supported("1.0.0")


@pytest.mark.parametrize("accept", [PROMETHEUS_ACCEPT, None])
def test_an_unverified_library_is_served_by_its_own_encoders(
    monkeypatch: pytest.MonkeyPatch, accept: str | None
) -> None:
    monkeypatch.setattr(exposition, "FAST_PATH", False)
    encoder, content_type = exposition.encoder_for(accept)
    library, library_type = choose_encoder(accept or "")
    assert encoder not in (exposition.openmetrics_latest, exposition.text_latest)
    assert content_type == library_type
    registry = rich_registry(True)
    assert exposition.render(accept, registry) == (library(registry), library_type)


def test_metrics_server_serves_both_formats_and_gzip() -> None:
    registry = rich_registry(False)
    server = qm.start_metrics_server(port=0, registry=registry)
    try:
        answer = httpx.get(
            server.url, headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
        )
        assert answer.status_code == 200
        assert answer.headers["content-encoding"] == "gzip"
        assert answer.headers["content-type"].startswith("application/openmetrics-text")
        assert answer.content == om.generate_latest(registry)  # httpx un-gzips
        plain = httpx.get(server.url, headers={"Accept-Encoding": "identity"})
        assert plain.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
        assert "content-encoding" not in plain.headers
        assert plain.content == library_text(registry)
        only = httpx.get(server.url, params={"name[]": "temp"})
        assert only.text.count("# TYPE") == 1 and "temp 1.234567e+06" in only.text
        assert httpx.post(server.url).status_code == 405
    finally:
        server.stop()


def test_gzip_is_cheap_and_real() -> None:
    body = exposition.openmetrics_latest(rich_registry(False))
    packed, headers = exposition.compress(body, "gzip, deflate")
    assert headers == [("Content-Encoding", "gzip")] and gzip.decompress(packed) == body
    assert exposition.compress(body, None) == (body, [])


#: promtool's lint findings on names that are public contracts (we keep them as they are;
#: ``controlbus_apply_ack_latency_ms_hist`` is the histogram twin of the documented gauge).
CONTRACT_NAME_FINDINGS = {
    "controlbus_apply_ack_latency_ms metric names should not contain abbreviated units",
    "controlbus_apply_ack_latency_ms_hist metric names should not contain abbreviated units",
    "diff_duration_ms metric names should not contain abbreviated units",
    "diff_duration_ms_p95 metric names should not contain abbreviated units",
    "gateway_e2e_latency_ms metric names should not contain abbreviated units",
    "node_process_duration_ms metric names should not contain abbreviated units",
    'orphan_queue_total non-counter metrics should not have "_total" suffix',
    'sentinel_gap_count non-histogram and non-summary metrics should not have "_count" suffix',
}


def catalogue_registry() -> CollectorRegistry:
    """Every catalogue metric on a registry of its own, each with a sample.

    promtool lints only families that hold samples, and a labelled family holds none
    until a child exists; the process-wide registry has children only for what earlier
    tests in the same worker happened to touch.  Here every family has one.
    """
    from qmtl.foundation.catalogue import CATALOGUE

    registry = CollectorRegistry()
    for entry in CATALOGUE:
        metric = qm.create(entry, registry=registry)
        child = metric.labels(*(f"{label}-1" for label in entry.labels)) if entry.labels else metric
        getattr(child, {"counter": "inc", "gauge": "set", "histogram": "observe"}[entry.kind])(1)
    return registry


def test_promtool_check_metrics_finds_nothing_but_the_contract_names() -> None:
    """Every QMTL metric family, rendered fast with a sample each, parses and lints in promtool."""
    import subprocess

    from qmtl.devstack import find_binary
    from qmtl.foundation.catalogue import CATALOGUE

    body = exposition.text_latest(catalogue_registry())
    assert body.count(b"# TYPE ") == len(CATALOGUE)
    assert b"# TYPE gateway_e2e_latency_ms histogram" in body
    promtool = find_binary(["promtool"], "install it with: apt-get install prometheus")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    findings = set((result.stdout + result.stderr).decode().splitlines())
    assert findings <= CONTRACT_NAME_FINDINGS, findings - CONTRACT_NAME_FINDINGS
    broken = body + b'qmtl_truncated{le="1.0" 12\n'  # a mangled line must be caught
    bad = subprocess.run(
        [promtool, "check", "metrics"], input=broken, capture_output=True, timeout=60, check=False
    )
    assert bad.returncode != 0 and b"error while linting" in bad.stdout + bad.stderr
