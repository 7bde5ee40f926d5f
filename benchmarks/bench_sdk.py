"""SDK throughput: node executions/s of a 10-node strategy with metrics on vs off, and
event-recorder rows/s into a local ILP/HTTP receiver.

The strategy is a StreamInput followed by a chain of 9 processing nodes with trivial
compute (each reads the latest cached value and adds one).  Both variants run in the
same process, interleaved, best of several rounds.

    python benchmarks/bench_sdk.py [--events 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import time

from _common import save, table

from qmtl.runtime.io import QuestDBRecorder
from qmtl.runtime.sdk import Executor, ProcessingNode, Strategy, StreamInput, metrics
from qmtl.testing.receivers import IlpReceiver


def latest_plus_one(view):  # type: ignore[no-untyped-def]
    return view.values()[-1] + 1


class Chain(Strategy):
    def setup(self) -> None:
        self.src = StreamInput(tags=["bench"], interval=60, period=1)
        node = self.src
        self.add_nodes(node)
        for i in range(9):
            node = ProcessingNode(
                input=node, compute_fn=latest_plus_one, name=f"n{i}", period=1, config={"i": i}
            )
            self.add_nodes(node)


def executions_per_second(events: int, enabled: bool) -> float:
    strategy = Chain()
    strategy.setup()
    executor = Executor(strategy.ordered_nodes(), metrics_enabled=enabled)
    src = strategy.src
    feed = executor.feed
    started = time.perf_counter()
    for i in range(events):
        feed(src, float(i), 1.0)
    elapsed = time.perf_counter() - started
    executions = executor.result.executions
    executor.close()
    assert executions == events * 9
    return executions / elapsed


def recorder_rows_per_second(rows: int) -> tuple[float, int]:
    with IlpReceiver() as rx:
        recorder = QuestDBRecorder(rx.conf, batch_size=10_000)
        started = time.perf_counter()
        for i in range(rows):
            recorder.record("bench", 1_700_000_000 + i, {"price": 1.0 * i, "qty": i})
        enqueue = time.perf_counter() - started
        recorder.close()
        elapsed = time.perf_counter() - started
        rx.wait_for_rows(rows, timeout=60)
        assert recorder.rows_failed == 0
        return rows / elapsed, int(enqueue / rows * 1e9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    on, off = [], []
    for _ in range(args.rounds):
        off.append(executions_per_second(args.events, False))
        on.append(executions_per_second(args.events, True))
        metrics.reset_metrics()
    best_on, best_off = max(on), max(off)
    per_exec_on, per_exec_off = 1e6 / best_on, 1e6 / best_off
    overhead = (per_exec_on - per_exec_off) / per_exec_on
    rows_per_s, enqueue_ns = recorder_rows_per_second(args.rows)
    rows = [
        ["node executions/s, metrics off (baseline)", best_off, per_exec_off, 1.0, ""],
        ["node executions/s, metrics on", best_on, per_exec_on, best_on / best_off, ">= 100,000/s"],
        [
            "instrumentation share of execution time",
            overhead * 100,
            per_exec_on - per_exec_off,
            "",
            "<= 10 %",
        ],
        [
            "recorder rows/s into local ILP receiver",
            rows_per_s,
            enqueue_ns / 1000,
            "",
            ">= 100,000/s",
        ],
    ]
    markdown = "### SDK throughput (10-node chain)\n\n" + table(
        ["measure", "value", "us per execution / row (enqueue)", "ratio vs metrics off", "target"],
        rows,
    )
    save(
        "sdk",
        markdown,
        {"on": on, "off": off, "recorder_rows_per_s": rows_per_s, "overhead": overhead},
    )


if __name__ == "__main__":
    main()
