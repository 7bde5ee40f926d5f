"""Event recorders: persist every ``StreamInput`` payload without slowing the strategy.

``record()`` only appends to an in-memory queue; a background thread takes batches,
writes each batch with one request (QuestDB) or one transaction (SQLite), retries with
backoff, and counts every row it finally could not persist in
``event_recorder_errors_total{recorder=...}``.  A full queue drops the row and counts it
too: the strategy's hot path never blocks on storage.

* :class:`QuestDBRecorder` -- the official ``questdb`` client, ILP over HTTP; one
  ``Sender`` (one keep-alive connection) for all batches.
* :class:`SQLiteRecorder` -- embedded default for runs without QuestDB.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmtl.runtime.sdk import metrics

__all__ = [
    "EventRecorder",
    "QuestDBRecorder",
    "Row",
    "SQLiteRecorder",
    "open_recorder",
    "safe_name",
]

log = logging.getLogger(__name__)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_]")


@functools.lru_cache(maxsize=4096)
def safe_name(name: str, what: str = "name") -> str:
    """A table/column name QuestDB and SQLite accept: other characters become ``_``.

    Memoised: the same few stream and field names come by for every row.
    """
    cleaned = _UNSAFE_NAME.sub("_", str(name)).strip("_")[:127]
    if not cleaned:
        cleaned = f"unnamed_{what}"
    return cleaned if not cleaned[0].isdigit() else f"_{cleaned}"


@dataclass(frozen=True, slots=True)
class Row:
    table: str
    timestamp: float  # seconds since the epoch
    payload: Any


class EventRecorder(ABC):
    """Background batching writer; subclasses implement :meth:`_write`."""

    name = "memory"

    def __init__(
        self,
        *,
        batch_size: int = 5000,
        flush_interval: float = 0.2,
        max_queue: int = 1_000_000,
        retries: int = 3,
        backoff_seconds: float = 0.2,
    ) -> None:
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self._queue: deque[Row] = deque()
        self._wakeup = threading.Condition()
        self._closing = False
        self._in_flight = 0
        self.rows_written = 0
        self.rows_failed = 0
        self.last_error: str | None = None
        # Export the series at 0 from the start, so increase() sees the first real error.
        metrics.event_recorder_errors_total.labels(self.name)
        self._thread = threading.Thread(
            target=self._run, name=f"qmtl-recorder-{self.name}", daemon=True
        )
        self._thread.start()

    # -- hot path ------------------------------------------------------------------------
    def record(self, table: str, timestamp: float, payload: Any) -> None:
        """Queue one row; never blocks (a full queue drops and counts the row)."""
        if len(self._queue) >= self.max_queue:
            self._count_failed(1, "recorder queue full: storage too slow or unreachable")
            return
        self._queue.append(Row(table, timestamp, payload))
        if len(self._queue) >= self.batch_size:
            with self._wakeup:
                self._wakeup.notify()

    # -- worker --------------------------------------------------------------------------
    def _take_batch(self) -> list[Row]:
        batch: list[Row] = []
        queue = self._queue
        while queue and len(batch) < self.batch_size:
            batch.append(queue.popleft())
        self._in_flight = len(batch)
        return batch

    def _run(self) -> None:
        while True:
            with self._wakeup:
                if not self._queue and not self._closing:
                    self._wakeup.wait(self.flush_interval)
                if self._closing and not self._queue:
                    self._wakeup.notify_all()
                    return
            batch = self._take_batch()
            if batch:
                self._write_with_retries(batch)
            with self._wakeup:
                self._in_flight = 0
                self._wakeup.notify_all()

    def _write_with_retries(self, batch: list[Row]) -> None:
        for attempt in range(self.retries + 1):
            try:
                self._write(batch)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                if attempt < self.retries and not self._closing:
                    time.sleep(self.backoff_seconds * (2**attempt))
                    continue
                self._count_failed(len(batch), self.last_error)
                return
            self.rows_written += len(batch)
            return

    def _count_failed(self, rows: int, reason: str) -> None:
        if self.rows_failed == 0:
            log.warning("recorder %s: %d row(s) not persisted: %s", self.name, rows, reason)
        self.rows_failed += rows
        metrics.observe_recorder_errors(self.name, rows)

    @abstractmethod
    def _write(self, rows: list[Row]) -> None:
        """Persist one batch or raise; the caller retries and counts failures."""

    # -- lifecycle -------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued row is written or counted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._wakeup:
            self._wakeup.notify()
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wakeup.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        with self._wakeup:
            self._closing = True
            self._wakeup.notify_all()
        self._thread.join(timeout)
        self._close()

    def _close(self) -> None:
        """Optional hook: release the backend's connection."""
        return None

    def __enter__(self) -> EventRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _columns(payload: Any) -> dict[str, Any]:
    """A payload as QuestDB columns: numbers, bools and strings as-is, the rest as JSON."""
    if not isinstance(payload, Mapping):
        payload = {"value": payload}
    columns: dict[str, Any] = {}
    for key, value in payload.items():
        name = safe_name(key, "column")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, bool | int | float | str):
            columns[name] = value
        else:
            columns[name] = json.dumps(value, default=str, sort_keys=True)
    return columns


class QuestDBRecorder(EventRecorder):
    """Rows to QuestDB over ILP/HTTP with the official client.

    ``conf`` is a client configuration string, e.g. ``http::addr=localhost:9000;``.
    """

    name = "questdb"

    def __init__(self, conf: str = "http::addr=localhost:9000;", **kwargs: Any) -> None:
        if "::" not in conf:
            conf = f"http::addr={conf};"
        if "auto_flush" not in conf:
            conf = conf.rstrip(";") + ";auto_flush=off;"
        self.conf = conf
        self._sender: Any = None
        super().__init__(**kwargs)

    def _ensure_sender(self) -> Any:
        if self._sender is None:
            from questdb import Sender

            sender = Sender.from_conf(self.conf)
            sender.establish()  # type: ignore[no-untyped-call]
            self._sender = sender
        return self._sender

    def _write(self, rows: list[Row]) -> None:
        from questdb import TimestampNanos

        try:
            sender = self._ensure_sender()
            for row in rows:
                sender.row(
                    safe_name(row.table, "table"),
                    columns=_columns(row.payload),
                    at=TimestampNanos(int(row.timestamp * 1e9)),
                )
            sender.flush()
        except Exception:
            self._drop_sender()
            raise

    def _drop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                sender.close(flush=False)
            except Exception as exc:  # a dead connection may refuse to close cleanly
                log.debug("closing QuestDB sender: %s", exc)

    def _close(self) -> None:
        self._drop_sender()


class SQLiteRecorder(EventRecorder):
    """Rows to a local SQLite file: one table per stream, payload as JSON."""

    name = "sqlite"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._tables: set[str] = set()
        super().__init__(**kwargs)

    def _write(self, rows: list[Row]) -> None:
        by_table: dict[str, list[tuple[int, str]]] = {}
        for row in rows:
            by_table.setdefault(safe_name(row.table, "table"), []).append(
                (int(row.timestamp * 1e9), json.dumps(row.payload, default=str, sort_keys=True))
            )
        with self._conn:
            for table, values in by_table.items():
                quoted = '"' + table.replace('"', '""') + '"'
                if table not in self._tables:
                    self._conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {quoted} (ts_ns INTEGER NOT NULL, payload TEXT NOT NULL)"
                    )
                    self._tables.add(table)
                self._conn.executemany(
                    f"INSERT INTO {quoted} (ts_ns, payload) VALUES (?, ?)", values
                )

    def _close(self) -> None:
        self._conn.close()


def open_recorder(spec: str, **kwargs: Any) -> EventRecorder:
    """``sqlite:PATH``, ``questdb:CONF`` or a bare QuestDB conf (``http::addr=host:9000;``)."""
    if spec.startswith("sqlite:"):
        return SQLiteRecorder(spec.removeprefix("sqlite:"), **kwargs)
    if spec.startswith("questdb:"):
        spec = spec.removeprefix("questdb:")
    if spec.startswith(("http::", "https::", "tcp::", "tcps::")) or ":" in spec:
        return QuestDBRecorder(spec, **kwargs)
    raise ValueError(
        f"recorder {spec!r}: use sqlite:PATH or a QuestDB conf like http::addr=localhost:9000;"
    )
