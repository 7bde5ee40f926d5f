"""Drills that need no switch inside a service: make a Kafka consumer group lag, then catch up."""

from __future__ import annotations

import time

__all__ = ["catch_up", "lag_behind"]


def lag_behind(
    bootstrap: str, topic: str, group: str, *, records: int = 4, timeout: float = 30.0
) -> None:
    """Produce ``records`` records, then let ``group`` consume and commit only the first.

    Each record is flushed on its own: tansu's high watermark is the base offset of the
    last batch + 1, so one record per batch keeps the offset lag exact.
    """
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for index in range(records):
        producer.produce(topic, f"record-{index}".encode())
        producer.flush(10)
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "session.timeout.ms": 6000,
    })  # fmt: skip
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                consumer.commit(message=message, asynchronous=False)
                return
        raise TimeoutError(f"group {group} read nothing from {topic} within {timeout:.0f}s")
    finally:
        consumer.close()


def catch_up(bootstrap: str, topic: str, group: str) -> None:
    """Commit ``group``'s offset at the end of partition 0 of ``topic``: lag back to zero."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "session.timeout.ms": 6000})  # fmt: skip
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.commit(offsets=[TopicPartition(topic, 0, high)], asynchronous=False)
    finally:
        consumer.close()
