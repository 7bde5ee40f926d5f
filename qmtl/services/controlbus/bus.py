"""ControlBus backends.

* :class:`EventLog` / :class:`LocalLogBus` -- an ordered, bounded in-memory log hosted
  by the WorldService; :class:`HttpBus` reads it remotely by long-polling
  ``GET /controlbus/events?after=SEQ`` and publishes with ``POST /controlbus/events``.
  The embedded default: works across processes with nothing to install.
* :class:`KafkaBus` -- one topic on a real broker (confluent-kafka).
* :class:`InProcessBus` -- both ends in one process.

Every backend delivers at least once: a subscriber may see an envelope twice (a
retried POST, a consumer restart), so :class:`ControlBus` drops ids it has seen.
Handlers run on the bus's own thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = [
    "ACK",
    "FREEZE",
    "UNFREEZE",
    "ControlBus",
    "Envelope",
    "EventLog",
    "HttpBus",
    "InProcessBus",
    "KafkaBus",
    "LocalLogBus",
    "open_bus",
]

log = logging.getLogger(__name__)
FREEZE = "qmtl.apply.freeze"
UNFREEZE = "qmtl.apply.unfreeze"
ACK = "qmtl.apply.ack"
Handler = Callable[["Envelope"], None]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Envelope:
    """A CloudEvents 1.0 structured event."""

    type: str
    source: str
    subject: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=_now_iso)
    specversion: str = "1.0"
    datacontenttype: str = "application/json"

    def epoch(self) -> float:
        return datetime.fromisoformat(self.time.replace("Z", "+00:00")).timestamp()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Envelope:
        missing = {"type", "source", "subject", "data", "id", "time"} - set(data)
        if missing:
            raise ValueError(f"envelope lacks {', '.join(sorted(missing))}")
        known = {
            k: data[k]
            for k in ("type", "source", "subject", "data", "id", "time", "specversion")
            if k in data
        }
        return cls(**known)


class ControlBus(ABC):
    """Publish envelopes; deliver each envelope id to subscribers at most once per process."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self.duplicates = 0
        #: Set once the subscriber side receives new events (Kafka group joined, log reached).
        self.ready = threading.Event()

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    @abstractmethod
    def publish(self, envelope: Envelope) -> None:
        """Hand ``envelope`` to the backend; raise ConnectionError when it cannot."""

    def _deliver(self, envelope: Envelope) -> None:
        with self._seen_lock:
            if envelope.id in self._seen:
                self.duplicates += 1
                return
            self._seen[envelope.id] = None
            if len(self._seen) > 10_000:
                self._seen.popitem(last=False)
        for handler in list(self._handlers):
            try:
                handler(envelope)
            except Exception:
                log.exception("controlbus handler failed for %s %s", envelope.type, envelope.id)

    def start(self) -> None:
        """Optional hook: begin delivering to subscribers."""
        return None

    def close(self) -> None:
        """Optional hook: stop delivering and release the backend."""
        return None


class InProcessBus(ControlBus):
    def publish(self, envelope: Envelope) -> None:
        self._deliver(envelope)

    def start(self) -> None:
        self.ready.set()


class EventLog:
    """Ordered, bounded event log with long-poll reads (hosted by the WorldService)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._events: deque[tuple[int, Envelope]] = deque(maxlen=capacity)
        self._seq = 0
        self._changed = threading.Condition()

    def append(self, envelope: Envelope) -> int:
        with self._changed:
            self._seq += 1
            self._events.append((self._seq, envelope))
            self._changed.notify_all()
            return self._seq

    def read(
        self, after: int, *, wait: float = 0.0, limit: int = 500
    ) -> tuple[int, list[Envelope]]:
        """Events with sequence > ``after`` (waiting up to ``wait`` s); returns (last seq, events)."""
        deadline = time.monotonic() + wait
        with self._changed:
            while self._seq <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._seq, []
                self._changed.wait(remaining)
            events = [(s, e) for s, e in self._events if s > after][:limit]
        return (events[-1][0] if events else after), [e for _, e in events]

    @property
    def head(self) -> int:
        return self._seq


class LocalLogBus(ControlBus):
    """The WorldService's own view of its log: publish appends, subscribers follow it."""

    def __init__(self, event_log: EventLog) -> None:
        super().__init__()
        self.log = event_log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, envelope: Envelope) -> None:
        self.log.append(envelope)

    def start(self) -> None:
        def follow() -> None:
            position = self.log.head
            self.ready.set()
            while not self._stop.is_set():
                position, events = self.log.read(position, wait=0.5)
                for event in events:
                    self._deliver(event)

        self._thread = threading.Thread(target=follow, daemon=True, name="controlbus-local")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()


class HttpBus(ControlBus):
    """Client of a WorldService-hosted log: long-polls events, POSTs envelopes (with retries)."""

    def __init__(self, base_url: str, *, poll_wait: float = 5.0) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.poll_wait = poll_wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False

    def publish(self, envelope: Envelope) -> None:
        last: Exception | None = None
        for attempt in range(5):
            try:
                response = httpx.post(f"{self.base_url}/controlbus/events", content=envelope.to_json(),
                                      headers={"content-type": "application/json"}, timeout=5)  # fmt: skip
                response.raise_for_status()
                return
            except httpx.HTTPError as exc:
                last = exc
                time.sleep(0.2 * 2**attempt)
        raise ConnectionError(f"controlbus publish to {self.base_url} failed: {last}")

    def start(self) -> None:
        def follow() -> None:
            position: int | None = None
            with httpx.Client(timeout=self.poll_wait + 5) as client:
                while not self._stop.is_set():
                    try:
                        params = {
                            "wait": self.poll_wait,
                            "after": -1 if position is None else position,
                        }
                        body = client.get(
                            f"{self.base_url}/controlbus/events", params=params
                        ).json()
                        self.connected = True
                    except (httpx.HTTPError, ValueError) as exc:
                        if self.connected:
                            log.warning("controlbus: lost %s (%s); retrying", self.base_url, exc)
                        self.connected = False
                        self._stop.wait(1.0)
                        continue
                    if position is None:  # first contact: start at the head, not the history
                        position = body["head"]
                        self.ready.set()
                        continue
                    if body["head"] < position:  # the log restarted: follow it from scratch
                        position = 0
                        continue
                    position = body["last"]
                    for raw in body["events"]:
                        self._deliver(Envelope.from_dict(raw))

        self._thread = threading.Thread(target=follow, daemon=True, name="controlbus-http")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()


class KafkaBus(ControlBus):
    """Envelopes as JSON records on one Kafka topic; each process reads with its own group."""

    def __init__(self, brokers: str, topic: str, *, group: str) -> None:
        super().__init__()
        from confluent_kafka import Producer

        self.brokers, self.topic, self.group = brokers, topic, group
        self._producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": False})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_topic(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.brokers})  # must outlive its future
        futures = admin.create_topics([NewTopic(self.topic, 1, 1)])
        try:
            futures[self.topic].result(10)
        except Exception as exc:  # already exists is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise

    def publish(self, envelope: Envelope) -> None:
        self._producer.produce(
            self.topic, envelope.to_json().encode(), key=envelope.subject.encode()
        )
        if self._producer.flush(10) != 0:
            raise ConnectionError(f"controlbus publish to Kafka {self.brokers} timed out")

    def start(self) -> None:
        from confluent_kafka import Consumer

        self.ensure_topic()
        consumer = Consumer({
            "bootstrap.servers": self.brokers, "group.id": self.group, "auto.offset.reset": "latest",
            "enable.auto.commit": True, "session.timeout.ms": 6000,
        })  # fmt: skip
        consumer.subscribe([self.topic], on_assign=lambda _consumer, _partitions: self.ready.set())

        def follow() -> None:
            try:
                while not self._stop.is_set():
                    message = consumer.poll(0.5)
                    if message is None or message.error() is not None:
                        continue
                    try:
                        self._deliver(Envelope.from_dict(json.loads(message.value())))
                    except (ValueError, TypeError) as exc:
                        log.warning("controlbus: skipping malformed record: %s", exc)
            finally:
                consumer.close()

        self._thread = threading.Thread(target=follow, daemon=True, name="controlbus-kafka")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def open_bus(config: Any, *, role: str, event_log: EventLog | None = None) -> ControlBus:
    """The bus for ``role`` (``worldservice`` hosts the log, ``gateway`` reads it)."""
    if config.backend == "kafka":
        return KafkaBus(config.brokers, config.topic, group=f"qmtl-{role}-{uuid.uuid4().hex[:6]}")
    if config.backend == "inprocess":
        return InProcessBus()
    if event_log is not None:
        return LocalLogBus(event_log)
    return HttpBus(config.url)
