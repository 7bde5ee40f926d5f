"""Consumer-lag monitor: per topic, offset lag and the age of the oldest unconsumed message."""

from __future__ import annotations

import logging

from qmtl.foundation.config import DagManagerConfig
from qmtl.foundation.metrics import remove_series
from qmtl.services.dagmanager import metrics
from qmtl.services.dagmanager.queues import LagReading, QueueBackend
from qmtl.services.dagmanager.store import GraphStore

__all__ = ["LagMonitor"]

log = logging.getLogger(__name__)


class LagMonitor:
    def __init__(self, store: GraphStore, queues: QueueBackend, config: DagManagerConfig) -> None:
        self.store = store
        self.queues = queues
        self.config = config
        self._exported: set[str] = set()
        self.last: list[LagReading] = []

    def threshold(self, topic: str) -> float:
        return self.config.lag_thresholds.get(topic, self.config.lag_threshold_seconds)

    def poll(self) -> list[LagReading]:
        if not self.queues.measures_lag:
            # Nothing to read, and listing every active queue each interval is not free:
            # its temporary copy grew the DAG Manager's RSS with the store (soak benchmark).
            return []
        topics = sorted(self.store.active_queues() | set(self.config.lag_thresholds))
        readings = self.queues.lag(self.config.lag_consumer_group, topics)
        seen = set()
        for reading in readings:
            seen.add(reading.topic)
            metrics.queue_lag_messages.labels(reading.topic).set(reading.messages)
            metrics.queue_lag_seconds.labels(reading.topic).set(reading.seconds)
            metrics.queue_lag_threshold_seconds.labels(reading.topic).set(
                self.threshold(reading.topic)
            )
        for gone in self._exported - seen:
            for gauge in (
                metrics.queue_lag_messages, metrics.queue_lag_seconds, metrics.queue_lag_threshold_seconds,
            ):  # fmt: skip
                remove_series(gauge, gone)
        self._exported = seen
        self.last = readings
        return readings
