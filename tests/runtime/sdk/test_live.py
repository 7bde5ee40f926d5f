"""A strategy submitted through a real Gateway runs live on its Kafka queues."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from qmtl import devstack
from qmtl.devstack.stack import LocalStack
from qmtl.runtime.sdk import ProcessingNode, Strategy, StreamInput
from qmtl.runtime.sdk.live import LiveRunner

pytestmark = pytest.mark.integration


class Doubler(Strategy):
    def setup(self) -> None:
        self.src = StreamInput(tags=["live"], interval=60, period=1, name="live_price")
        self.double = ProcessingNode(
            input=self.src, compute_fn=lambda v: v.values()[-1] * 2, name="double"
        )
        self.add_nodes(self.src, self.double)


def test_live_runner_consumes_stream_queue_and_publishes_outputs(tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer

    broker = devstack.start_kafka(tmp_path / "kafka")
    try:
        with LocalStack(
            tmp_path / "stack", kafka=broker.bootstrap, kafka_controlbus=False
        ) as stack:
            strategy = Doubler()
            runner = LiveRunner(
                strategy, stack.url("gateway"), brokers=broker.bootstrap, world_id="live-w"
            )
            reply = runner.start()
            # Like submit(..., admin_url=...): the promotion guard reads this process.
            assert runner.admin_url is not None
            devstack.wait_for(
                lambda: any(s["url"] == runner.admin_url and s["world_id"] == "live-w"
                            for s in httpx.get(f"{stack.url('worldservice')}/promotion-guard/sources",
                                               timeout=10).json()["sources"]),
                timeout=30, what="the LiveRunner's admin URL registered with the guard",
            )  # fmt: skip
            report = httpx.get(f"{runner.admin_url}/admin/cross-context", timeout=10).json()
            assert report["hits"] == []
            source_queue = reply.queue_map[strategy.src.node_id]
            output_queue = reply.queue_map[strategy.double.node_id]
            assert runner.assigned.wait(30), "the runner joined its consumer group"
            producer = Producer({"bootstrap.servers": broker.bootstrap})
            for i in range(5):
                producer.produce(source_queue, json.dumps({"ts": 60.0 * i, "payload": i}).encode())
                producer.flush(10)
            reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "test-reader",
                               "auto.offset.reset": "earliest", "session.timeout.ms": 6000})  # fmt: skip
            reader.subscribe([output_queue])
            outputs = []
            deadline = time.monotonic() + 60
            while len(outputs) < 5 and time.monotonic() < deadline:
                message = reader.poll(0.5)
                if message is not None and message.error() is None:
                    outputs.append(json.loads(message.value())["payload"])
            reader.close()
            runner.stop()
            assert outputs == [0, 2, 4, 6, 8]
            assert runner.executor is not None and runner.executor.result.executions == 5
    finally:
        broker.stop()
