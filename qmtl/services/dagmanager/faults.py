"""DAG Manager drills: faulty wrappers around its ports (installed only with drills on).

| switch              | wrapper          | effect                                           |
|---------------------|------------------|--------------------------------------------------|
| diff_delay_ms       | FaultyStore      | every diff's lookup sleeps (DiffDurationHigh)     |
| diff_fail           | FaultyStore      | every diff fails UNAVAILABLE (DiffFailureRateHigh)|
| queue_create_fail   | FaultyQueues     | topic creation refused (QueueCreateErrors)        |
| queue_backend_down  | FaultyQueues     | backend unreachable (KafkaAdminBreakerOpen)       |
| sentinel_skip       | FaultyStore      | diffs record no sentinel (SentinelGap)            |
| gc_stall            | stalled_schedule | GC runs are skipped (GCSchedulerStall)            |
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from qmtl.foundation.errors import BackendUnavailable
from qmtl.foundation.faults import FaultSet, Faulty, Switch
from qmtl.services.dagmanager.queues import LagReading, QueueBackend, QueueBackendError

__all__ = ["FaultyQueues", "FaultyStore", "dagmanager_faults", "stalled_schedule"]

log = logging.getLogger(__name__)


def dagmanager_faults() -> FaultSet:
    return FaultSet(
        Switch("diff_delay_ms", 0.0, "every diff sleeps this many milliseconds first"),
        Switch("diff_fail", False, "every diff fails UNAVAILABLE"),
        Switch("queue_create_fail", False, "the queue backend refuses new topics"),
        Switch("queue_backend_down", False, "the queue backend is unreachable"),
        Switch("sentinel_skip", False, "diffs finish without recording the version sentinel"),
        Switch("gc_stall", False, "the GC scheduler skips its runs"),
    )


class FaultyQueues(Faulty):
    """Wraps a queue backend: refuses topic creation, or is unreachable."""

    def __init__(self, queues: QueueBackend, faults: FaultSet) -> None:
        super().__init__(queues, faults)
        self.kind = queues.kind
        self.local = False  # a drill may make any call slow or fail: never on the loop
        self.measures_lag = queues.measures_lag

    def _check(self) -> None:
        if self._faults.queue_backend_down:
            raise QueueBackendError("queue backend is marked down (fault injection)")

    def create(self, topics: Sequence[str]) -> dict[str, str | None]:
        self._check()
        if self._faults.queue_create_fail:
            return dict.fromkeys(topics, "topic creation refused (fault injection)")
        return self._inner.create(topics)

    def delete(self, topics: Sequence[str]) -> dict[str, str | None]:
        self._check()
        return self._inner.delete(topics)

    def list(self) -> set[str]:
        self._check()
        return self._inner.list()

    def probe(self) -> bool:
        return not self._faults.queue_backend_down and self._inner.probe()

    def lag(self, group: str, topics: Sequence[str]) -> builtins.list[LagReading]:
        self._check()
        return self._inner.lag(group, topics)

    def close(self) -> None:
        self._inner.close()


class FaultyStore(Faulty):
    """Wraps the graph store: slow or failing diff lookups, diffs without sentinels.

    The lookup is the first store call of every diff, so a delay or failure here is
    inside the diff's measured duration and counted as a failed diff, as a slow or
    broken store would be.
    """

    def __init__(self, store: Any, faults: FaultSet) -> None:
        super().__init__(store, faults)
        self.local = False  # diff_delay_ms sleeps in a store call: never on the loop

    def diff_lookup(self, queues: Sequence[str], *args: Any) -> Any:
        if self._faults.diff_delay_ms:
            time.sleep(self._faults.diff_delay_ms / 1000.0)
        if self._faults.diff_fail:
            raise BackendUnavailable("diff failed by fault injection (qmtl ops fault diff_fail)")
        return self._inner.diff_lookup(queues, *args)

    def write_diff(self, cur: Any, *args: Any, sentinel_id: str | None = None) -> None:
        if self._faults.sentinel_skip:
            sentinel_id = None
        self._inner.write_diff(cur, *args, sentinel_id=sentinel_id)


def stalled_schedule(step: Callable[[], None], faults: FaultSet) -> Callable[[], None]:
    """The GC scheduler's step, skipped while ``gc_stall`` is on, as a scheduler that
    stopped would (the GC timestamp stops moving; a manual ``/admin/gc-trigger`` still
    sweeps)."""

    def scheduled() -> None:
        if faults.gc_stall:
            log.warning("gc run skipped: scheduler stalled by fault injection")
            return
        step()

    return scheduled
