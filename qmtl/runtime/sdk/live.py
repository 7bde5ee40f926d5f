"""Run a strategy live on the queues the DAG Manager bound for it.

    runner = LiveRunner(MyStrategy(), "http://gateway:8000", brokers="kafka:9092", world_id="w")
    runner.start()          # submit through the Gateway, then consume / compute / publish
    ...
    runner.stop()

Each StreamInput consumes its own queue (JSON records ``{"ts": ..., "payload": ...}``);
every processing node's output is published to that node's queue, so downstream
strategies and other processes can consume it.  Requires the Kafka queue backend.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from qmtl.runtime.sdk.admin import advertised_url, process_admin_server
from qmtl.runtime.sdk.cache import ComputeContext
from qmtl.runtime.sdk.gateway import Submitted, submit
from qmtl.runtime.sdk.node import StreamInput
from qmtl.runtime.sdk.runner import Executor, Runner, Strategy

__all__ = ["LiveRunner"]

log = logging.getLogger(__name__)


class LiveRunner:
    def __init__(
        self,
        strategy: Strategy | type[Strategy],
        gateway_url: str,
        *,
        brokers: str,
        world_id: str = "",
        execution_domain: str = "live",
        group: str = "qmtl-runtime",
        admin_url: str | None = None,
    ) -> None:
        self.strategy = Runner.build(strategy)
        self.gateway_url = gateway_url
        self.brokers = brokers
        self.world_id = world_id
        self.execution_domain = execution_domain
        self.group = group
        #: The admin URL given to the promotion guard; None: this process's own endpoint
        #: (:func:`~qmtl.runtime.sdk.admin.process_admin_server`), started on ``start()``.
        self.admin_url = admin_url
        self.queue_map: dict[str, str] = {}
        self.executor: Executor | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.assigned = threading.Event()
        self.published = 0

    def start(self) -> Submitted:
        """Submit through the Gateway, then run in a background thread; returns the submission.

        The submission names this process's admin endpoint, so the WorldService's
        promotion guard reads its cross-context hits like any submitted strategy's.
        """
        if self.admin_url is None:
            self.admin_url = advertised_url(process_admin_server())
        reply = submit(
            self.strategy,
            self.gateway_url,
            world_id=self.world_id,
            execution_domain=self.execution_domain,
            admin_url=self.admin_url,
        )
        self.queue_map = dict(reply.queue_map)
        context = ComputeContext(world_id=self.world_id, execution_domain=self.execution_domain)
        self.executor = Executor(self.strategy.ordered_nodes(), context)
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"live-{self.strategy.name}"
        )
        self._thread.start()
        return reply

    def _run(self) -> None:
        from confluent_kafka import Consumer, Producer

        assert self.executor is not None
        streams = {
            self.queue_map[n.node_id]: n for n in self.strategy.nodes if isinstance(n, StreamInput)
        }
        consumer = Consumer({
            "bootstrap.servers": self.brokers, "group.id": self.group, "auto.offset.reset": "earliest",
            "enable.auto.commit": True, "session.timeout.ms": 6000,
        })  # fmt: skip
        producer = Producer({"bootstrap.servers": self.brokers})
        consumer.subscribe(list(streams), on_assign=lambda _c, _p: self.assigned.set())
        try:
            while not self._stop.is_set():
                message = consumer.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                stream = streams.get(message.topic() or "")
                if stream is None:
                    continue
                try:
                    record = json.loads(message.value() or b"")
                    ts, payload = float(record.get("ts", time.time())), record["payload"]
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("live: skipping malformed record on %s: %s", message.topic(), exc)
                    continue
                produced = self.executor.feed(stream, ts, payload)
                for node_id, value in produced.items():
                    if node_id == stream.node_id:
                        continue
                    producer.produce(
                        self.queue_map[node_id], json.dumps({"ts": ts, "payload": value}).encode()
                    )
                    self.published += 1
                producer.poll(0)
        finally:
            producer.flush(10)
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self.executor is not None:
            self.executor.close()
