"""SDK metrics as Prometheus sees them: scraped over HTTP from a live metrics server."""

from __future__ import annotations

import time
from pathlib import Path
from statistics import fmean

import httpx
import pytest

from qmtl.foundation.metrics import MetricsServerError
from qmtl.runtime.sdk import (
    ComputeContext,
    Executor,
    ProcessingNode,
    Runner,
    Strategy,
    StreamInput,
    metrics,
)
from qmtl.testing.metrics import scrape


def test_the_documented_backfill_example_in_exposition(metrics_url: str) -> None:
    metrics.observe_backfill_start("node", 60)
    metrics.observe_backfill_complete("node", 60, 123)
    text = httpx.get(metrics_url, timeout=5).text
    assert "backfill_jobs_in_progress 0" in text
    assert 'backfill_last_timestamp{interval="60",node_id="node"} 123' in text
    collected = metrics.collect_metrics()
    assert 'backfill_last_timestamp{interval="60",node_id="node"} 123' in collected


def test_port_in_use_is_a_clear_error(metrics_url: str) -> None:
    port = int(metrics_url.split(":")[2].split("/")[0])
    with pytest.raises(MetricsServerError, match="already in use"):
        metrics.start_metrics_server(port=port)


class Pipeline(Strategy):
    def setup(self) -> None:
        self.price = StreamInput(tags=["btc"], interval=60, period=5)
        self.avg = ProcessingNode(
            input=self.price,
            compute_fn=lambda v: fmean(p for p in v.values()),
            name="avg",
            period=5,
        )
        self.bad = ProcessingNode(input=self.avg, compute_fn=self.explode, name="bad", period=2)
        self.after = ProcessingNode(
            input=self.avg, compute_fn=lambda v: v.values()[-1] * 2, name="after", period=2
        )
        self.add_nodes(self.price, self.avg, self.bad, self.after)

    @staticmethod
    def explode(view):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


def test_node_and_cache_metrics_of_a_real_run(metrics_url: str) -> None:
    """A failing node is counted and does not stop its siblings; every metric is scraped."""
    strategy = Pipeline()
    strategy.setup()
    items = [(1_700_000_000.0 + 60 * i, 100.0 + i) for i in range(10)]
    executor = Executor(strategy.ordered_nodes())
    before = time.time()
    for ts, price in items:
        executor.feed(strategy.price, ts, price)
    m = scrape(metrics_url)
    avg, bad, after = strategy.avg.node_id, strategy.bad.node_id, strategy.after.node_id
    assert m.get_value("node_processed_total", node_id=avg) == 10
    assert m.get_value("node_processed_total", node_id=bad) == 10
    assert m.get_value("node_process_failure_total", node_id=bad) == 10
    assert m.get_value("node_process_failure_total", node_id=avg) == 0
    assert m.get_value("node_processed_total", node_id=after) == 10
    assert executor.result.last_outputs[after] == 2 * fmean(range(105, 110))
    assert m.get_value("node_process_duration_ms_count", node_id=avg) == 10
    assert m.get_value("node_process_duration_ms_bucket", node_id=avg, le="+Inf") == 10
    assert m.get_value("node_process_duration_ms_bucket", node_id=avg, le="10000.0") == 10
    assert m.get_value("cache_read_total", upstream_id=strategy.price.node_id, interval="60") == 10
    assert m.get_value("cache_read_total", upstream_id=avg, interval="60") == 10  # "after" reads
    assert m.get_value("cache_last_read_timestamp", upstream_id=avg, interval="60") >= before
    per_node = m.get_value("nodecache_resident_bytes", node_id=avg, scope="node")
    total = m.get_value("nodecache_resident_bytes", node_id="all", scope="total")
    assert per_node > 0 and total >= per_node
    executor.close()
    after_close = scrape(metrics_url)
    assert after_close.get_value("nodecache_resident_bytes", node_id=avg, scope="node") is None
    assert after_close.get_value("nodecache_resident_bytes", node_id="all", scope="total") is None


def test_duration_histogram_can_cross_500ms(metrics_url: str) -> None:
    """Buckets reach 10 s so NodeSlowProcessing's 500 ms p95 is measurable."""
    metrics.observe_node_process("slow", 700.0)
    m = scrape(metrics_url)
    assert m.get_value("node_process_duration_ms_bucket", node_id="slow", le="500.0") == 0
    assert m.get_value("node_process_duration_ms_bucket", node_id="slow", le="1000.0") == 1


def test_an_isolated_cache_switching_context_serves_nothing_and_counts_nothing(
    metrics_url: str,
) -> None:
    """The report: set_context counted a critical hit after clearing the cache, though
    nothing of the other context was served -- a false page and a blocked promotion."""
    strategy = Pipeline()
    strategy.setup()
    executor = Executor(
        strategy.ordered_nodes(), ComputeContext(world_id="w1", execution_domain="live")
    )
    executor.feed(strategy.price, 1.0, 100.0)
    executor.set_context(ComputeContext(world_id="w2"))
    executor.feed(strategy.price, 2.0, 101.0)
    assert not scrape(metrics_url).series("cross_context_cache_hit_total")
    # The new context never sees the old context's data.
    assert [
        v for _, v in executor.caches[strategy.avg.node_id].buffers[(strategy.price.node_id, 60)]
    ] == [101.0]
    executor.close()


def test_a_shared_cache_serving_another_contexts_data_is_counted_once_with_unset_labels(
    metrics_url: str,
) -> None:
    """Isolation off: the first read of live data under the new context is the breach."""
    strategy = Pipeline()
    strategy.setup()
    executor = Executor(
        strategy.ordered_nodes(), ComputeContext(world_id="w1", execution_domain="live"),
        isolate_contexts=False,
    )  # fmt: skip
    executor.feed(strategy.price, 1.0, 100.0)
    executor.set_context(ComputeContext(world_id="w2"))  # domain, as_of, partition missing
    assert not scrape(metrics_url).series("cross_context_cache_hit_total"), "nothing served yet"
    executor.feed(strategy.price, 2.0, 101.0)  # the compute reads the old context's item
    executor.feed(strategy.price, 3.0, 102.0)
    labels = {
        "world_id": "w2", "execution_domain": "__unset__", "as_of": "__unset__",
        "partition": "__unset__",
    }  # fmt: skip
    hits = scrape(metrics_url).get_value(
        "cross_context_cache_hit_total", node_id=strategy.avg.node_id, **labels
    )
    assert hits == 1
    executor.set_context(ComputeContext(world_id="w1", execution_domain="live"))
    executor.set_context(ComputeContext(world_id="w2"))  # back and forth, no read: no hit
    assert (
        scrape(metrics_url).get_value(
            "cross_context_cache_hit_total", node_id=strategy.avg.node_id, **labels
        )
        == 1
    )
    executor.close()


def test_empty_cache_context_switch_is_not_a_hit(metrics_url: str) -> None:
    strategy = Pipeline()
    strategy.setup()
    executor = Executor(strategy.ordered_nodes())
    executor.set_context(ComputeContext(world_id="w3", execution_domain="live"))
    assert not scrape(metrics_url).series("cross_context_cache_hit_total")
    executor.close()


def test_offline_runner_uses_history_and_records_metrics(metrics_url: str) -> None:
    class Hist(Strategy):
        def setup(self) -> None:
            self.src = StreamInput(tags=["eth"], interval=60, period=3,
                                   history_provider=lambda s, e: [(t, float(t)) for t in range(int(s), int(e), 60)])  # fmt: skip
            self.add_nodes(
                self.src,
                ProcessingNode(input=self.src, compute_fn=lambda v: len(v.values()), period=3),
            )

    result = Runner.offline(Hist, start=0, end=600)
    assert result.events == 10 and result.executions == 10 and result.failures == {}
    m = scrape(metrics_url)
    assert m.get_value("backfill_jobs_in_progress") == 0
    assert sum(m.series("backfill_last_timestamp").values()) == 540


def test_reset_metrics_zeroes_everything(metrics_url: str) -> None:
    metrics.observe_node_process("n", 1.0)
    metrics.observe_cross_context_hit("n", None, "", None, None)
    metrics.observe_recorder_errors("questdb", 3)
    metrics.reset_metrics()
    m = scrape(metrics_url)
    assert not m.series("node_processed_total")
    assert not m.series("cross_context_cache_hit_total")
    assert not m.series("event_recorder_errors_total")


def test_recorder_label_is_bounded() -> None:
    metrics.observe_recorder_errors("made-up-recorder", 2)
    assert metrics.event_recorder_errors_total.labels("__unset__")._value.get() == 2


@pytest.mark.parametrize("trace_nodes", [False, True])
def test_metrics_are_the_same_with_per_node_tracing(
    metrics_url: str, trace_nodes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trace_nodes=True used to drop failures and record 0 ms: NodeFailures and
    NodeSlowProcessing could not fire for traced strategies."""

    class Slow(Strategy):
        def setup(self) -> None:
            self.price = StreamInput(tags=["slow"], interval=60, period=2)
            self.slow = ProcessingNode(input=self.price, compute_fn=self.nap, name="slow", period=2)
            self.bad = ProcessingNode(
                input=self.price, compute_fn=Pipeline.explode, name="bad", period=2
            )
            self.add_nodes(self.price, self.slow, self.bad)

        @staticmethod
        def nap(view):  # type: ignore[no-untyped-def]
            time.sleep(0.003)
            return 1

    strategy = Runner.build(Slow)
    executor = Executor(strategy.ordered_nodes(), trace_nodes=trace_nodes)
    for ts in range(5):
        executor.feed(strategy.price, float(ts), {"p": ts})
    m = scrape(metrics_url)
    slow, bad = strategy.slow.node_id, strategy.bad.node_id
    assert m.get_value("node_processed_total", node_id=slow) == 5
    assert m.get_value("node_process_failure_total", node_id=bad) == 5
    assert m.get_value("node_process_failure_total", node_id=slow) == 0
    assert m.get_value("node_process_duration_ms_sum", node_id=slow) >= 5 * 3
    assert m.get_value("node_process_duration_ms_bucket", node_id=slow, le="2.5") == 0
    monkeypatch.setattr(metrics, "SERIES_GRACE_SECONDS", 0.0)
    executor.close()
    assert scrape(metrics_url).get_value("node_processed_total", node_id=slow) == 5, "seen once"
    assert scrape(metrics_url).get_value("node_processed_total", node_id=slow) is None


def test_a_closed_executors_series_reach_a_scrape_before_they_go(
    metrics_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report: ``Runner.offline`` closed its executor and dropped the node series at
    once, so a backtest with 50 failing events exposed no node_process_failure_total once
    it returned.  Released series stay until a scrape saw them and the grace passed; a
    new executor of the same node picks its counts up again."""

    class Failing(Strategy):
        def setup(self) -> None:
            self.price = StreamInput(tags=["lifetime"], interval=60, period=2)
            self.bad = ProcessingNode(
                input=self.price, compute_fn=Pipeline.explode, name="bad", period=2
            )
            self.add_nodes(self.price, self.bad)

    def backtest() -> str:
        strategy = Runner.build(Failing)
        data = {strategy.price: [(float(ts), {"p": ts}) for ts in range(50)]}
        Runner.offline(strategy, data=data)
        return str(strategy.bad.node_id)

    bad = backtest()
    failed = scrape(metrics_url).get_value("node_process_failure_total", node_id=bad)
    assert failed is not None and failed >= 48
    for _ in range(3):  # within the grace, every scrape still has them
        assert scrape(metrics_url).get_value("node_process_failure_total", node_id=bad) == failed
    assert "node_process_failure_total" in metrics.collect_metrics()
    monkeypatch.setattr(metrics, "SERIES_GRACE_SECONDS", 0.0)  # seen and past the grace
    assert scrape(metrics_url).get_value("node_process_failure_total", node_id=bad) is None
    assert backtest() == bad  # the node again: a new series, counted from zero
    assert scrape(metrics_url).get_value("node_process_failure_total", node_id=bad) == failed


def test_released_series_are_dropped_unscraped_after_the_longest_linger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing scrapes: released series still go (memory stays bounded)."""
    stats = metrics.node_stats("Nlinger", acquire=True)
    stats.failures = 3
    metrics.release_node("Nlinger")
    assert "Nlinger" in metrics._nodes
    monkeypatch.setattr(metrics, "SERIES_MAX_LINGER_SECONDS", 0.0)
    metrics._drop_released()
    assert "Nlinger" not in metrics._nodes


EXEMPLAR_SCRIPT = r"""
import sys
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.exposition import generate_latest
from qmtl.foundation.tracing import setup_tracing
from qmtl.runtime.sdk import Executor, ProcessingNode, Runner, Strategy, StreamInput

class One(Strategy):
    def setup(self):
        self.price = StreamInput(tags=["ex"], interval=60, period=2)
        self.add_nodes(self.price, ProcessingNode(input=self.price, compute_fn=lambda v: 1, name="one", period=2))

if sys.argv[1] == "console":
    setup_tracing("sdk", "console")
strategy = Runner.build(One)
executor = Executor(strategy.ordered_nodes(), trace_nodes=sys.argv[2] == "on")
for ts in range(3):
    executor.feed(strategy.price, float(ts), {"p": ts})
sys.stderr.write(generate_latest(REGISTRY).decode())
"""


@pytest.mark.parametrize(
    ("tracing", "trace_nodes", "expected"),
    [("console", "on", True), ("console", "off", False), ("none", "on", False)],
)
def test_node_duration_exemplars_only_for_recorded_spans(
    tracing: str, trace_nodes: str, expected: bool
) -> None:
    """With per-node spans recorded (console exporter included), buckets carry trace ids."""
    import re
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", EXEMPLAR_SCRIPT, tracing, trace_nodes],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [
        line for line in result.stderr.splitlines()
        if line.startswith("node_process_duration_ms_bucket")
    ]  # fmt: skip
    assert lines, result.stderr[-2000:]
    with_exemplar = [line for line in lines if " # {" in line]
    assert bool(with_exemplar) == expected, lines
    for line in with_exemplar:
        assert re.search(r'# \{trace_id="[0-9a-f]{32}"\} [0-9.e-]+ [0-9.]+$', line), line
    if expected:
        # The printed spans (console exporter) include the exemplar's trace.
        trace_id = re.search(r'trace_id="([0-9a-f]{32})"', with_exemplar[0]).group(1)  # type: ignore[union-attr]
        assert f"0x{trace_id}" in result.stdout


def test_the_metrics_server_binds_the_configured_host(tmp_path: Path) -> None:
    """The report: start_metrics_server(port=8000) always bound 127.0.0.1, so a Prometheus
    in another pod could never scrape a strategy.  ``sdk.host`` (qmtl.yml or
    QMTL_SDK__HOST) and the ``host`` argument choose the address."""
    import os
    import subprocess
    import sys

    script = (
        "from qmtl.runtime.sdk import metrics\n"
        "server = metrics.start_metrics_server(port=0)\n"
        "print(server._server.server_address[0])\n"
        "explicit = metrics.start_metrics_server(port=0, host='127.0.0.1')\n"
        "print(explicit._server.server_address[0])\n"
    )
    for env, expected in (({"QMTL_SDK__HOST": "0.0.0.0"}, "0.0.0.0"), ({}, "127.0.0.1")):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
            cwd=tmp_path, env={**{k: v for k, v in os.environ.items() if not k.startswith("QMTL_SDK")}, **env},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [expected, "127.0.0.1"], (env, done.stdout)
