"""Two moving-average strategies in parallel, every StreamInput payload persisted to QuestDB.

    python -m qmtl.examples.questdb_parallel_example
        [--questdb 'http::addr=localhost:9000;'] [--recorder sqlite:events.db]
        [--metrics-port 8000] [--metrics-host 127.0.0.1] [--events 600] [--rate 10]
        [--fail-every 0]

Prints its metrics URL first, serves ``/metrics`` while it runs -- about a minute with
the defaults (600 events at 10/s), long enough to watch and scrape; ``--events`` and
``--rate`` make short runs, Ctrl-C ends it early -- and prints the aggregated metrics at
the end.  When
QuestDB cannot be reached the run still completes; the summary says so and
``event_recorder_errors_total`` shows the rows that were not persisted.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import threading
import time
from collections import defaultdict
from statistics import fmean

from prometheus_client.parser import text_string_to_metric_families

from qmtl.foundation.interrupts import interrupt_on_ctrl_c_and_term
from qmtl.foundation.metrics import MetricsServerError
from qmtl.runtime.io import EventRecorder, open_recorder
from qmtl.runtime.sdk import (
    Executor,
    ProcessingNode,
    Runner,
    RunResult,
    Strategy,
    StreamInput,
    metrics,
)

__all__ = ["MovingAverageCross", "build_parser", "main"]

SUMMARY_METRICS = (
    "node_processed_total",
    "node_process_failure_total",
    "event_recorder_errors_total",
    "cache_read_total",
    "cross_context_cache_hit_total",
    "backfill_failure_total",
)


def sma(window: int):  # type: ignore[no-untyped-def]
    def compute(view):  # type: ignore[no-untyped-def]
        prices = [p["price"] for p in view.values()[-window:]]
        return fmean(prices) if len(prices) == window else None

    return compute


class MovingAverageCross(Strategy):
    """Long when the fast average is above the slow one."""

    def __init__(
        self, asset: str, fast: int, slow: int, recorder: EventRecorder | None, fail_every: int = 0
    ):
        super().__init__()
        self.asset, self.fast, self.slow, self.recorder, self.fail_every = (
            asset,
            fast,
            slow,
            recorder,
            fail_every,
        )

    def setup(self) -> None:
        price = StreamInput(tags=[self.asset], interval=60, period=self.slow, event_service=self.recorder,
                            name=f"{self.asset}_price")  # fmt: skip
        fast = ProcessingNode(
            input=price, compute_fn=sma(self.fast), name=f"{self.asset}_fast", period=self.slow
        )
        slow = ProcessingNode(
            input=price, compute_fn=sma(self.slow), name=f"{self.asset}_slow", period=self.slow
        )
        signal = ProcessingNode(
            input=[fast, slow], compute_fn=self.cross, name=f"{self.asset}_signal", period=1
        )
        self.add_nodes(price, fast, slow, signal)

    def cross(self, view):  # type: ignore[no-untyped-def]
        fast_id, slow_id = (n.node_id for n in self.nodes[1:3])
        if fast_id not in view or slow_id not in view:
            return None  # the slow average is still warming up
        fast, slow = view.values(fast_id)[-1], view.values(slow_id)[-1]
        if self.fail_every and random.random() < 1 / self.fail_every:
            raise ValueError("injected compute error (--fail-every)")
        return 1 if fast > slow else -1


def random_walk(seed: int, events: int, start_price: float) -> list[tuple[float, dict[str, float]]]:
    rng = random.Random(seed)
    price, now = start_price, time.time() - events * 60
    items = []
    for i in range(events):
        price = max(1.0, price * (1 + rng.gauss(0, 0.002)))
        items.append(
            (now + i * 60, {"price": round(price, 4), "volume": round(rng.uniform(0.1, 5.0), 3)})
        )
    return items


def run_strategy(
    strategy: MovingAverageCross,
    items: list[tuple[float, dict[str, float]]],
    rate: float,
    results: dict[str, RunResult],
    stop: threading.Event,
) -> None:
    instance = Runner.build(strategy)
    executor = Executor(instance.ordered_nodes())
    stream = instance.nodes[0]
    started = time.monotonic()
    for index, (ts, payload) in enumerate(items):
        if stop.is_set():
            break
        executor.feed(stream, ts, payload)  # type: ignore[arg-type]
        if rate > 0:  # pace the feed so the run can be watched on /metrics
            delay = started + (index + 1) / rate - time.monotonic()
            if delay > 0:
                stop.wait(delay)
    results[strategy.asset] = executor.result
    executor.close()


def aggregate(exposition: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in SUMMARY_METRICS:
                totals[sample.name] += sample.value
    return {name: totals.get(name, 0.0) for name in SUMMARY_METRICS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qmtl.examples.questdb_parallel_example", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--questdb", default="http::addr=localhost:9000;", help="QuestDB client conf string"
    )
    parser.add_argument("--recorder", help="sqlite:PATH to record into SQLite instead of QuestDB")
    parser.add_argument("--metrics-port", type=int, default=8000)
    parser.add_argument(
        "--metrics-host",
        default=None,
        help="address /metrics binds (default: sdk.host of qmtl.yml, else 127.0.0.1; "
        "0.0.0.0 to be scraped from another host or pod)",
    )
    parser.add_argument("--events", type=int, default=600, help="price events per strategy")
    parser.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="events per second per strategy (default 10: a one-minute run to watch on "
        "/metrics; 0: as fast as possible)",
    )
    parser.add_argument(
        "--fail-every", type=int, default=0, help="inject a compute error about every N signals"
    )
    parser.add_argument("--seed", type=int, default=7)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.events <= 0:
        parser.error("--events must be positive")

    try:
        server = metrics.start_metrics_server(port=args.metrics_port, host=args.metrics_host)
    except MetricsServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spec = args.recorder or args.questdb
    try:
        recorder = open_recorder(spec)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        server.stop()
        return 2
    print(f"metrics: {server.url}   recorder: {recorder.name} ({spec})", flush=True)

    strategies = [
        MovingAverageCross("btc", 5, 20, recorder, args.fail_every),
        MovingAverageCross("eth", 10, 40, recorder, args.fail_every),
    ]
    results: dict[str, RunResult] = {}
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=run_strategy,
            args=(s, random_walk(args.seed + i, args.events, 100.0 * (i + 1)), args.rate, results,
                  stop),
            name=f"strategy-{s.asset}",
        )
        for i, s in enumerate(strategies)
    ]  # fmt: skip
    interrupt_on_ctrl_c_and_term()
    started = time.monotonic()
    for thread in threads:
        thread.start()
    seconds = args.events / args.rate if args.rate > 0 else 0
    print(f"running {len(strategies)} strategies, {args.events} events each"
          + (f" over about {seconds:.0f}s" if seconds else "") + "; Ctrl-C stops early", flush=True)  # fmt: skip
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(0.2)
    except KeyboardInterrupt:
        print("\nstopping early (Ctrl-C) ...", flush=True)
        stop.set()
        for thread in threads:
            thread.join()
    recorder.close()
    elapsed = time.monotonic() - started

    totals = aggregate(metrics.collect_metrics())
    print(f"\nran {len(strategies)} strategies in parallel for {elapsed:.1f}s")
    for asset, result in sorted(results.items()):
        print(
            f"  {asset}: {result.events} events, {result.executions} node executions, {sum(result.failures.values())} failures"
        )
    print(
        f"recorded {recorder.rows_written} of {recorder.rows_written + recorder.rows_failed} StreamInput payloads to {recorder.name}"
    )
    if recorder.rows_failed:
        print(
            f"WARNING: {recorder.rows_failed} payloads were not persisted; {recorder.name} unreachable or failing: {recorder.last_error}"
        )
    print("\naggregated metrics:")
    for name, value in totals.items():
        print(f"  {name} {value:g}")
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
