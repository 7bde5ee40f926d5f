"""Queue backends: where node outputs live.

* :class:`InProcessQueues` -- embedded default; topics are names in memory.
* :class:`KafkaQueues` -- confluent-kafka admin against a real broker.

Both answer the same small interface (create, delete, list, probe, lag).  Calls are
synchronous; the DAG Manager runs them in worker threads behind the ``kafka``
circuit breaker.  Topic names come from :func:`queue_name`.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qmtl.foundation.dag import DagNode

__all__ = [
    "InProcessQueues",
    "KafkaQueues",
    "LagReading",
    "QueueBackend",
    "QueueBackendError",
    "context_namespace",
    "is_internal_topic",
    "open_queue_backend",
    "queue_name",
]

_UNSAFE = re.compile(r"[^a-zA-Z0-9._-]+")


class QueueBackendError(RuntimeError):
    """The queue backend refused or could not be reached."""


@functools.lru_cache(maxsize=4096)
def _clean(text: str) -> str:
    """Kafka-safe spelling of a name part.  Cached: assets, node types and versions
    repeat across the nodes of a DAG, and this runs three times per node per diff."""
    return _UNSAFE.sub("-", text).strip("-").lower() or "x"


def context_namespace(world_id: str, domain: str, as_of: str = "", partition: str = "") -> str:
    """``{world}.{domain}.{ctx12}.``: the queue prefix of one compute context.

    World and domain keep names readable; ``ctx12`` is a hash of the whole context
    (world, domain, as_of, partition), so two contexts never share a queue even where
    cleaning makes their readable parts equal (``W1`` vs ``w1``) or only ``as_of`` /
    ``partition`` differ.
    """
    domain = domain or "backtest"
    digest = hashlib.blake2b(
        "\x1f".join((world_id, domain, as_of, partition)).encode(), digest_size=6
    ).hexdigest()
    return f"{_clean(world_id or 'default')}.{_clean(domain)}.{digest}."


#: Kafka's longest topic name.
MAX_TOPIC = 249


def queue_name(node: DagNode, *, namespace: str = "") -> str:
    """``[{namespace}]{asset}_{type}_{hash16}_{version}``, safe for Kafka (<= 249 chars).

    16 hex digits (64 bits) of the node id: with 8, different nodes shared a name once a
    store held ~100k nodes (birthday bound), which the diff benchmark ran into.
    ``namespace`` is :func:`context_namespace` under compute-key isolation (the
    default), empty when the operator opted out (``dagmanager.namespace_queues: false``).
    """
    node_hash = node.node_id[1:17]
    asset, kind, version = _clean(node.asset), _clean(node.node_type), _clean(node.version)
    name = f"{namespace}{asset}_{kind}_{node_hash}_{version}"
    if len(name) <= MAX_TOPIC:
        return name
    # Too long for Kafka: shorten the free text, never the hash -- cutting the name's end
    # dropped the hash, and different nodes collided (a false queue_name_collision).
    share = (MAX_TOPIC - len(namespace) - len(node_hash) - 3) // 3
    return f"{namespace}{asset[:share]}_{kind[:share]}_{node_hash}_{version[:share]}"


def is_internal_topic(name: str) -> bool:
    """Broker-internal topics (``__consumer_offsets``, ``_schemas``, the ControlBus) are never GC'd."""
    return name.startswith("_") or name.startswith("qmtl.controlbus")


@dataclass(frozen=True)
class LagReading:
    topic: str
    messages: int
    seconds: float


class QueueBackend(Protocol):
    kind: str
    #: Whether every call stays in this process and never waits on anything (the
    #: servicer may then run a small diff on the event loop).
    local: bool
    #: Whether :meth:`lag` can report anything: the lag monitor reads every active
    #: queue's name from the graph store only for a backend that measures lag.
    measures_lag: bool

    def create(self, topics: Sequence[str]) -> dict[str, str | None]:
        """Create topics idempotently; map each topic to an error message or ``None``."""

    def delete(self, topics: Sequence[str]) -> dict[str, str | None]: ...

    def list(self) -> set[str]:
        """Every topic, as a new set the caller may change."""

    def probe(self) -> bool:
        """Cheap health check that never raises."""

    def lag(self, group: str, topics: Sequence[str]) -> builtins.list[LagReading]: ...

    def close(self) -> None: ...


class InProcessQueues:
    """Topics as names in memory (the embedded default)."""

    kind = "inprocess"
    local = True
    measures_lag = False  # no consumer groups in memory

    def __init__(self) -> None:
        self._topics: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(self, topics: Sequence[str]) -> dict[str, str | None]:
        with self._lock:
            now = time.time()
            for topic in topics:
                self._topics.setdefault(topic, now)
        return dict.fromkeys(topics)

    def delete(self, topics: Sequence[str]) -> dict[str, str | None]:
        with self._lock:
            for topic in topics:
                self._topics.pop(topic, None)
        return dict.fromkeys(topics)

    def list(self) -> set[str]:
        with self._lock:
            return set(self._topics)

    def probe(self) -> bool:
        return True

    def lag(self, group: str, topics: Sequence[str]) -> builtins.list[LagReading]:
        return []

    def close(self) -> None:
        pass


class _Coalescer:
    """Group commit for a slow call: concurrent callers share one call with all their items.

    A caller that finds no call running runs one for the oldest waiting callers (itself
    included when it fits), and runs batches until its own answer is in; callers arriving
    meanwhile wait and share the next batch: a broker handles one CreateTopics of 120
    topics much faster than six of 20.  A batch stops at ``max_items`` (a caller is
    never split): one huge request would run into the broker's timeout.
    """

    def __init__(
        self, call: Callable[[list[str]], dict[str, str | None]], *, max_items: int = 100
    ) -> None:
        self._call = call
        self._max_items = max_items
        self._changed = threading.Condition()
        self._pending: list[tuple[list[str], dict[str, Any]]] = []
        self._running = False

    def __call__(self, items: Sequence[str]) -> dict[str, str | None]:
        slot: dict[str, Any] = {}
        with self._changed:
            self._pending.append((list(items), slot))
            while "result" not in slot:
                if self._running:
                    self._changed.wait()
                    continue
                # Nobody runs a batch: run the oldest callers' (ours or not) and go on
                # until ours has its answer.
                self._running = True
                batch = self._take_batch()
                self._changed.release()
                try:
                    self._run(batch)
                finally:
                    self._changed.acquire()
                    self._running = False
                    self._changed.notify_all()
        result = slot["result"]
        if isinstance(result, BaseException):
            raise result
        return {item: result.get(item) for item in items}

    def _take_batch(self) -> list[tuple[list[str], dict[str, Any]]]:
        """Oldest callers first, up to ``max_items`` items (always at least one caller)."""
        batch: list[tuple[list[str], dict[str, Any]]] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0][0]) <= self._max_items):
            entry = self._pending.pop(0)
            batch.append(entry)
            size += len(entry[0])
        return batch

    def _run(self, batch: list[tuple[list[str], dict[str, Any]]]) -> None:
        union = list(dict.fromkeys(i for items, _slot in batch for i in items))
        try:
            results: dict[str, str | None] | BaseException = self._call(union)
        except BaseException as exc:  # handed to every caller of the batch
            results = exc
        for _items, slot in batch:
            slot["result"] = results


class KafkaQueues:
    """Kafka topics through confluent-kafka's AdminClient (tested against tansu).

    Concurrent diffs' topic creations are coalesced into one CreateTopics call.
    """

    kind = "kafka"
    local = False
    measures_lag = True

    def __init__(self, bootstrap: str, *, timeout: float = 5.0) -> None:
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.timeout = timeout
        self._admin = AdminClient(
            {"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)}
        )
        self._lock = threading.Lock()
        self._create = _Coalescer(self._create_now)

    def create(self, topics: Sequence[str]) -> dict[str, str | None]:
        return self._create(topics)

    def _create_now(self, topics: Sequence[str]) -> dict[str, str | None]:
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

        results: dict[str, str | None] = {}
        futures = self._admin.create_topics(
            [NewTopic(t, num_partitions=1, replication_factor=1) for t in topics],
            request_timeout=self.timeout,
            operation_timeout=self.timeout,
        )
        transport_errors = 0
        for topic, future in futures.items():
            try:
                future.result(timeout=self.timeout + 1)
                results[topic] = None
            except KafkaException as exc:
                error = exc.args[0]
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    results[topic] = None
                    continue
                results[topic] = str(error)
                if isinstance(error, KafkaError) and error.code() in (
                    KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
                ):  # fmt: skip
                    transport_errors += 1
            except Exception as exc:  # concurrent.futures.TimeoutError and friends
                results[topic] = f"{type(exc).__name__}: {exc}"
                transport_errors += 1
        if topics and transport_errors == len(topics):
            raise QueueBackendError(
                f"Kafka broker {self.bootstrap} unreachable: {next(iter(results.values()))}"
            )
        return results

    def delete(self, topics: Sequence[str]) -> dict[str, str | None]:
        from confluent_kafka import KafkaException

        results: dict[str, str | None] = {}
        for topic, future in self._admin.delete_topics(
            list(topics), operation_timeout=self.timeout
        ).items():
            try:
                future.result(timeout=self.timeout + 1)
                results[topic] = None
            except KafkaException as exc:
                results[topic] = str(exc.args[0])
        return results

    def list(self) -> set[str]:
        from confluent_kafka import KafkaException

        try:
            metadata = self._admin.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            raise QueueBackendError(
                f"Kafka broker {self.bootstrap} unreachable: {exc.args[0]}"
            ) from None
        return set(metadata.topics)

    def probe(self) -> bool:
        try:
            self._admin.list_topics(timeout=min(self.timeout, 2.0))
        except Exception:
            return False
        return True

    def lag(self, group: str, topics: Sequence[str]) -> builtins.list[LagReading]:
        """Offset lag and age of the oldest unconsumed message, per topic with commits."""
        from confluent_kafka import Consumer, TopicPartition

        if not topics:
            return []
        base = {
            "bootstrap.servers": self.bootstrap,
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
        readings: list[LagReading] = []
        watcher = Consumer({**base, "group.id": group})
        peeker = Consumer({**base, "group.id": f"qmtl-lag-peek-{uuid.uuid4().hex[:8]}"})
        try:
            metadata = watcher.list_topics(timeout=self.timeout)
            partitions = [
                TopicPartition(t, p)
                for t in topics
                if t in metadata.topics
                for p in metadata.topics[t].partitions
            ]
            if not partitions:
                return []
            committed = watcher.committed(partitions, timeout=self.timeout)
            now = time.time()
            per_topic: dict[str, tuple[int, float]] = {}
            for tp in committed:
                if tp.offset < 0:  # the group never committed here: lag is undefined
                    continue
                _low, high = watcher.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=self.timeout
                )
                behind = max(0, high - tp.offset)
                age = 0.0
                if behind:
                    peeker.assign([TopicPartition(tp.topic, tp.partition, tp.offset)])
                    message = peeker.poll(self.timeout)
                    if message is not None and message.error() is None:
                        _kind, ts_ms = message.timestamp()
                        if ts_ms > 0:
                            age = max(0.0, now - ts_ms / 1000.0)
                messages, seconds = per_topic.get(tp.topic, (0, 0.0))
                per_topic[tp.topic] = (messages + behind, max(seconds, age))
            readings = [LagReading(t, m, s) for t, (m, s) in sorted(per_topic.items())]
        finally:
            watcher.close()
            peeker.close()
        return readings

    def close(self) -> None:
        pass


def open_queue_backend(kind: str, brokers: str, *, timeout: float = 5.0) -> QueueBackend:
    if kind == "kafka":
        return KafkaQueues(brokers, timeout=timeout)
    return InProcessQueues()
