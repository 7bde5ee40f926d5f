"""ControlBus transports (the envelope they carry is :mod:`qmtl.services.controlbus.envelope`).

* :class:`EventLog` / :class:`LocalLogBus` -- an ordered, bounded in-memory log hosted
  by the WorldService; :class:`HttpBus` reads it remotely by long-polling
  ``GET /controlbus/events?after=SEQ`` and publishes with ``POST /controlbus/events``.
  The embedded default: works across processes with nothing to install.
* :class:`KafkaBus` -- one topic on a real broker (confluent-kafka).
* :class:`InProcessBus` -- both ends in one process.

Every backend delivers at least once: a subscriber may see an envelope twice (a
retried POST, a consumer restart), so :class:`ControlBus` drops ids it has seen.
Handlers run on the bus's own thread.

Robustness rules, the same on every backend:

* envelopes are validated (:func:`parse_envelope`); a malformed or failing event is
  logged (at a bounded rate), counted in ``controlbus_invalid_events_total{reason}`` and skipped -- it
  never ends the delivery loop;
* :meth:`ControlBus.healthy` is true only while the delivery loop is alive and
  subscribed, so ``/status`` readiness cannot lie;
* a consumer that joins (a new Gateway, or one restarted mid-apply) first replays the
  events of the last ``replay_seconds`` -- Kafka from its committed offset or, for a
  new group, the start of the topic; HTTP by time -- so nothing published while it
  was joining or down is missed.  Subscribers ignore events older than they care for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import httpx

from qmtl.foundation import strictjson
from qmtl.foundation.errors import InvalidRequest
from qmtl.foundation.loglimit import LogLimiter
from qmtl.services.controlbus.envelope import (
    Envelope,
    parse_envelope,
)
from qmtl.services.controlbus.metrics import controlbus_invalid_events_total

__all__ = [
    "ControlBus",
    "EventLog",
    "HttpBus",
    "InProcessBus",
    "KafkaBus",
    "LocalLogBus",
    "open_bus",
]

Handler = Callable[[Envelope], None]
log = logging.getLogger(__name__)
#: Malformed events are one line each, at a bounded rate (anyone who can publish sends them).
_skipped = LogLimiter(log)
log = logging.getLogger(__name__)
#: Malformed events are one line each, at a bounded rate (anyone who can publish sends them).
_skipped = LogLimiter(log)


class ControlBus(ABC):
    """Publish envelopes; deliver each envelope id to subscribers at most once per process."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self.duplicates = 0
        self.invalid = 0
        #: Set once the subscriber side receives new events (Kafka group joined, log reached).
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def _rejected(self, reason: str, detail: object) -> None:
        self.invalid += 1
        _skipped.log("controlbus: skipping an event (%s): %s", reason, detail)
        controlbus_invalid_events_total.labels(reason).inc()

    @abstractmethod
    def publish(self, envelope: Envelope) -> None:
        """Hand ``envelope`` to the backend; raise ConnectionError when it cannot."""

    def deliver_raw(self, raw: Any) -> None:
        """Validate and deliver one event from the wire; never raises."""
        try:
            envelope = parse_envelope(raw)
        except InvalidRequest as exc:
            self._rejected("invalid_envelope", exc)
            return
        self._deliver(envelope)

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
            except Exception as exc:
                log.exception("controlbus handler failed for %s %s", envelope.type, envelope.id)
                self._rejected("handler_error", exc)

    def healthy(self) -> bool:
        """Subscribed and the delivery loop is alive."""
        thread = self._thread
        return self.ready.is_set() and (thread is None or thread.is_alive())

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
    """Ordered, bounded event log with long-poll reads (hosted by the WorldService).

    A long poll from HTTP waits on the event loop (:meth:`poll`), not in a thread: a
    waiting reader costs no thread, and :meth:`end_polls` (the server shutting down)
    answers every waiting poll at once instead of letting each one run out its wait --
    a shutdown would otherwise last as long as the longest poll.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._events: deque[tuple[int, float, Envelope]] = deque(maxlen=capacity)
        self._seq = 0
        self._polls_ended = False
        self._changed = threading.Condition()
        self._pollers: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def append(self, envelope: Envelope) -> int:
        """Add ``envelope``; :class:`InvalidRequest` if it could not be served back as JSON
        (one such event in the log would break every later read)."""
        try:
            envelope.to_json()
        except ValueError as exc:
            raise InvalidRequest(f"event {envelope.id} cannot be logged: {exc}") from None
        with self._changed:
            self._seq += 1
            self._events.append((self._seq, envelope.epoch(), envelope))
            self._wake_locked()
            return self._seq

    def end_polls(self) -> None:
        """Answer every waiting :meth:`poll` now, and every later one without waiting."""
        with self._changed:
            self._polls_ended = True
            self._wake_locked()

    def _wake_locked(self) -> None:
        self._changed.notify_all()
        for loop, waiter in self._pollers:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, waiter)

    def _after_locked(self, after: int, limit: int) -> tuple[int, list[Envelope]]:
        """Up to ``limit`` events after ``after`` and the last one's sequence; with none,
        the head -- below ``after`` when this log restarted, so the reader starts over."""
        events = [(s, e) for s, _t, e in self._events if s > after][:limit]
        return (events[-1][0] if events else self._seq), [e for _, e in events]

    def read(
        self, after: int, *, wait: float = 0.0, limit: int = 500
    ) -> tuple[int, list[Envelope]]:
        """Events with sequence > ``after`` (waiting up to ``wait`` s); returns (last seq, events)."""
        deadline = time.monotonic() + wait
        with self._changed:
            while self._seq <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self._after_locked(after, limit)

    async def poll(
        self, after: int, *, wait: float = 0.0, limit: int = 500
    ) -> tuple[int, list[Envelope]]:
        """:meth:`read` for a coroutine: waits on the running loop; :meth:`end_polls` ends it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            with self._changed:
                remaining = deadline - loop.time()
                if self._seq > after or self._polls_ended or remaining <= 0:
                    return self._after_locked(after, limit)
                waiter: asyncio.Future[None] = loop.create_future()
                self._pollers.add((loop, waiter))
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, remaining)
            finally:
                with self._changed:
                    self._pollers.discard((loop, waiter))

    def since(self, epoch: float) -> int:
        """The sequence just before the first event at or after ``epoch`` (replay start)."""
        with self._changed:
            for seq, stamp, _ in self._events:
                if stamp >= epoch:
                    return seq - 1
            return self._seq

    @property
    def head(self) -> int:
        return self._seq


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LocalLogBus(ControlBus):
    """The WorldService's own view of its log: publish appends, subscribers follow it."""

    def __init__(self, event_log: EventLog) -> None:
        super().__init__()
        self.log = event_log
        self._stop = threading.Event()

    def publish(self, envelope: Envelope) -> None:
        self.log.append(envelope)

    def start(self) -> None:
        def follow() -> None:
            position = self.log.head
            self.ready.set()
            while not self._stop.is_set():
                try:
                    position, events = self.log.read(position, wait=0.5)
                    for event in events:
                        self._deliver(event)
                except Exception as exc:  # never let one event end the loop
                    self._rejected("delivery_error", exc)

        self._thread = threading.Thread(target=follow, daemon=True, name="controlbus-local")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()


class HttpBus(ControlBus):
    """Client of a WorldService-hosted log: long-polls events, POSTs envelopes (with retries)."""

    def __init__(
        self,
        base_url: str,
        *,
        poll_wait: float = 5.0,
        replay_seconds: float = 0.0,
        token: str | None = None,
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.poll_wait = poll_wait
        self.replay_seconds = replay_seconds
        self._headers = {"content-type": "application/json"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._stop = threading.Event()
        self.connected = False
        # One client for every publish (heartbeats, ACKs): a new httpx client per request
        # builds an SSL context each time, milliseconds of CPU per heartbeat.
        self._publisher = httpx.Client(timeout=5)
        self._prober = httpx.Client(timeout=2, limits=httpx.Limits(max_keepalive_connections=0))

    def publish(self, envelope: Envelope) -> None:
        if self._stop.is_set():  # the shared client is closed: say so as callers expect
            raise ConnectionError(f"controlbus client for {self.base_url} is closed")
        last: Exception | None = None
        for attempt in range(5):
            try:
                response = self._publisher.post(
                    f"{self.base_url}/controlbus/events", content=envelope.to_json(),
                    headers=self._headers,
                )  # fmt: skip
                if 400 <= response.status_code < 500:
                    raise ConnectionError(
                        f"controlbus refused the event ({response.status_code}): {response.text[:200]}"
                    )
                response.raise_for_status()
                return
            except httpx.HTTPError as exc:
                last = exc
                time.sleep(0.2 * 2**attempt)
        raise ConnectionError(f"controlbus publish to {self.base_url} failed: {last}")

    def _poll(self, client: httpx.Client, position: int | None) -> int | None:
        if position is None:  # first contact: replay the recent past, then follow
            params: dict[str, Any] = {"since": time.time() - self.replay_seconds}
            body = client.get(f"{self.base_url}/controlbus/events", params=params).json()
            self.ready.set()
            return int(body["last"])
        params = {"wait": self.poll_wait, "after": position}
        body = client.get(f"{self.base_url}/controlbus/events", params=params).json()
        if body["head"] < position:  # the log restarted: follow it from scratch
            return 0
        for raw in body["events"]:
            self.deliver_raw(raw)
        return int(body["last"])

    def start(self) -> None:
        def follow() -> None:
            position: int | None = None
            with httpx.Client(timeout=self.poll_wait + 5) as client:
                while not self._stop.is_set():
                    try:
                        position = self._poll(client, position)
                        self.connected = True
                    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                        if self.connected:
                            log.warning("controlbus: lost %s (%s); retrying", self.base_url, exc)
                        self.connected = False
                        self._stop.wait(1.0)
                    except Exception as exc:  # never let anything end the loop
                        self._rejected("delivery_error", exc)
                        self._stop.wait(0.5)

        self._thread = threading.Thread(target=follow, daemon=True, name="controlbus-http")
        self._thread.start()

    def healthy(self) -> bool:
        return super().healthy() and self.connected

    def probe(self) -> bool:
        """Whether the WorldService hosting the log answers (``/health``, 2 s at most), on
        a fresh connection: a kept-alive one the server just closed is no outage."""
        response = self._prober.get(f"{self.base_url}/health", timeout=2.0)
        return response.status_code == 200

    def close(self) -> None:
        self._stop.set()
        self._publisher.close()
        self._prober.close()


class KafkaBus(ControlBus):
    """Envelopes as JSON records on one Kafka topic.

    ``group`` decides where a consumer resumes: a stable group per Gateway replica
    resumes from its committed offset after a restart; a new group starts at
    ``offset_reset`` (``earliest`` for Gateways: nothing published while it joined is
    missed; subscribers skip what is too old to matter).
    """

    def __init__(
        self, brokers: str, topic: str, *, group: str, offset_reset: str = "earliest"
    ) -> None:
        super().__init__()
        from confluent_kafka import Producer

        self.brokers, self.topic, self.group = brokers, topic, group
        self.offset_reset = offset_reset
        self._producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": False})
        self._stop = threading.Event()
        self._admin: Any = None

    def probe(self) -> bool:
        """Whether the broker answers a metadata request for the topic (2 s at most)."""
        from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.brokers})
        self._admin.list_topics(self.topic, timeout=2.0)
        return True

    def ensure_topic(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

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
            "bootstrap.servers": self.brokers, "group.id": self.group,
            "auto.offset.reset": self.offset_reset, "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000, "session.timeout.ms": 6000,
        })  # fmt: skip
        consumer.subscribe([self.topic], on_assign=lambda _consumer, _partitions: self.ready.set())

        def follow() -> None:
            try:
                while not self._stop.is_set():
                    try:
                        message = consumer.poll(0.5)
                        if message is None or message.error() is not None:
                            continue
                        try:
                            raw = strictjson.loads(message.value() or b"", "record")
                        except (ValueError, TypeError) as exc:
                            self._rejected("invalid_json", exc)
                            continue
                        self.deliver_raw(raw)
                    except Exception as exc:  # never let anything end the loop
                        self._rejected("delivery_error", exc)
            finally:
                consumer.close()

        self._thread = threading.Thread(target=follow, daemon=True, name="controlbus-kafka")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def open_bus(
    config: Any,
    *,
    role: str,
    instance_id: str,
    event_log: EventLog | None = None,
    replay_seconds: float = 0.0,
) -> ControlBus:
    """The bus for ``role`` (``worldservice`` hosts the log, ``gateway`` reads it).

    Gateways consume with a group per replica (``instance_id``), so a restart resumes
    where it stopped; the WorldService reads only the ACKs of runs it is waiting for.
    """
    if config.backend == "kafka":
        if role == "gateway":
            return KafkaBus(
                config.brokers, config.topic, group=f"qmtl-gateway-{instance_id}",
                offset_reset="earliest",
            )  # fmt: skip
        return KafkaBus(
            config.brokers, config.topic, group=f"qmtl-{role}-{uuid.uuid4().hex[:8]}",
            offset_reset="latest",
        )  # fmt: skip
    if config.backend == "inprocess":
        return InProcessBus()
    if event_log is not None:
        return LocalLogBus(event_log)
    return HttpBus(config.url, replay_seconds=replay_seconds, token=config.token)
