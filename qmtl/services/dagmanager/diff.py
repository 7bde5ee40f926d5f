"""The diff: validate a DAG, bind every node to a queue under its compute key.

Plain synchronous Python (the gRPC handler runs it in a worker thread).  Cost is
linear in the number of nodes: one parse, one hash per node, one batched lookup, at
most one batched topic creation and one store transaction.

Failure modes, each with its own exception (and gRPC status in the handler):

* :class:`InvalidDag` -- malformed JSON, cycles, unknown inputs, oversized payloads;
* :class:`CrossContextViolation` -- a queue already bound under another compute key;
* :class:`QueueCreationFailed` -- the queue backend refused new topics;
* :class:`BackendUnavailable` -- store or queue backend unreachable / breaker open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from qmtl.foundation.common import AsyncCircuitBreaker, CircuitOpenError
from qmtl.foundation.config import DagManagerConfig
from qmtl.foundation.dag import DagError, compute_key, parse_dag
from qmtl.foundation.metrics import normalize_label
from qmtl.services.dagmanager import metrics
from qmtl.services.dagmanager.faults import Faults
from qmtl.services.dagmanager.queues import QueueBackend, queue_name
from qmtl.services.dagmanager.store import Binding, GraphStore

__all__ = [
    "BackendUnavailable",
    "CrossContextViolation",
    "DiffEngine",
    "DiffError",
    "DiffRequestData",
    "DiffResult",
    "InvalidDag",
    "QueueCreationFailed",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class DiffError(Exception):
    """A diff that failed; ``code`` is the gRPC status name the handler returns."""

    code = "INTERNAL"


class InvalidDag(DiffError):
    code = "INVALID_ARGUMENT"


class CrossContextViolation(DiffError):
    code = "FAILED_PRECONDITION"


class QueueCreationFailed(DiffError):
    code = "UNAVAILABLE"


class BackendUnavailable(DiffError):
    code = "UNAVAILABLE"


@dataclass(frozen=True)
class DiffRequestData:
    strategy_id: str
    dag_json: str
    world_id: str = ""
    execution_domain: str = ""
    as_of: str = ""
    partition: str = ""


@dataclass
class DiffResult:
    queue_map: dict[str, str]
    buffering: list[tuple[str, int, int]]
    sentinel_id: str
    version: str
    crc32: int
    new_queues: int
    total_nodes: int = 0
    warnings: list[str] = field(default_factory=list)


def _guarded(breaker: AsyncCircuitBreaker, what: str, fn: Callable[..., T], *args: Any) -> T:
    """Run a backend call under ``breaker`` from synchronous code."""
    try:
        breaker.check()
    except CircuitOpenError as exc:
        raise BackendUnavailable(f"{what}: {exc}") from None
    try:
        result = fn(*args)
    except DiffError:
        raise
    except Exception as exc:
        breaker.record_failure()
        raise BackendUnavailable(f"{what} failed: {exc}") from exc
    breaker.record_success()
    return result


class DiffEngine:
    def __init__(
        self,
        store: GraphStore,
        queues: QueueBackend,
        config: DagManagerConfig,
        *,
        faults: Faults | None = None,
        store_breaker: AsyncCircuitBreaker,
        queue_breaker: AsyncCircuitBreaker,
    ) -> None:
        self.store = store
        self.queues = queues
        self.config = config
        self.faults = faults or Faults()
        self.store_breaker = store_breaker
        self.queue_breaker = queue_breaker

    def diff(self, request: DiffRequestData) -> DiffResult:
        """Run one diff and record its metrics, whatever the outcome."""
        started = time.perf_counter()
        failed = True
        try:
            result = self._diff(request)
            failed = False
            return result
        finally:
            metrics.observe_diff((time.perf_counter() - started) * 1000.0, failed=failed)

    def _diff(self, req: DiffRequestData) -> DiffResult:
        if self.faults.diff_delay_ms > 0:
            time.sleep(self.faults.diff_delay_ms / 1000.0)
        if self.faults.diff_fail:
            raise BackendUnavailable("diff failed by fault injection (qmtl ops fault diff-fail)")
        if not req.strategy_id:
            raise InvalidDag("strategy_id is required")
        try:
            dag = parse_dag(req.dag_json, max_bytes=self.config.max_dag_bytes)
        except DagError as exc:
            raise InvalidDag(str(exc)) from None

        context = {
            "world_id": req.world_id,
            "execution_domain": req.execution_domain or "backtest",
            "as_of": req.as_of,
            "partition": req.partition,
        }
        planned: dict[str, tuple[str, str]] = {}  # queue -> (node_id, compute key)
        queue_map: dict[str, str] = {}
        for node_id in dag.order:
            node = dag.nodes[node_id]
            queue = queue_name(
                node,
                world_id=req.world_id,
                domain=req.execution_domain,
                namespace=self.config.namespace_queues,
            )
            key = compute_key(node_id, req.world_id, req.execution_domain, req.as_of, req.partition)
            queue_map[node_id] = queue
            planned[queue] = (node_id, key)

        queues = list(planned)
        existing = _guarded(self.store_breaker, "graph store lookup", self.store.bindings, queues)
        conflicts = [
            q for q in queues if q in existing and existing[q].compute_key != planned[q][1]
        ]
        if conflicts:
            for queue in conflicts:
                metrics.cross_context_cache_hit_total.labels(
                    normalize_label(planned[queue][0]),
                    normalize_label(req.world_id),
                    normalize_label(req.execution_domain),
                    normalize_label(req.as_of),
                    normalize_label(req.partition),
                ).inc()
            first = existing[conflicts[0]]
            raise CrossContextViolation(
                f"{len(conflicts)} node(s) would reuse a queue bound to another compute context: "
                f"queue {conflicts[0]} belongs to {first.context}, this diff runs under {context}. "
                "Enable dagmanager.namespace_queues or submit with the original context; "
                "see the CrossContextCacheHit runbook"
            )

        new = [q for q in queues if q not in existing]
        if new:
            outcome = _guarded(self.queue_breaker, "queue backend", self.queues.create, new)
            failures = {q: err for q, err in outcome.items() if err}
            if failures:
                metrics.queue_create_error_total.inc(len(failures))
                queue, error = next(iter(failures.items()))
                raise QueueCreationFailed(
                    f"{len(failures)} of {len(new)} queue(s) could not be created (first: {queue}: {error})"
                )

        now = time.time()
        new_bindings = [Binding(q, planned[q][0], planned[q][1], context, now) for q in new]
        version_known = _guarded(
            self.store_breaker,
            "graph store",
            self.store.version_exists,
            req.strategy_id,
            dag.version,
        )
        _guarded(
            self.store_breaker,
            "graph store commit",
            self.store.commit_diff,
            req.strategy_id,
            dag.version,
            new_bindings,
            None if version_known else queues,
            now,
        )

        sentinel_id = f"{req.strategy_id}:{dag.version}:sentinel"
        warnings = []
        try:
            if self.faults.sentinel_skip:
                raise RuntimeError("sentinel write skipped by fault injection")
            _guarded(
                self.store_breaker, "sentinel write", self.store.record_sentinel,
                req.strategy_id, dag.version, sentinel_id, now,
            )  # fmt: skip
        except (DiffError, RuntimeError) as exc:
            # The queue map is valid; the gap is visible in sentinel_gap_count.
            warnings.append(f"sentinel not recorded: {exc}")
            log.warning("diff %s/%s: sentinel not recorded: %s", req.strategy_id, dag.version, exc)

        new_set = set(new)
        buffering = [
            (node_id, dag.nodes[node_id].period or 0, dag.nodes[node_id].interval or 0)
            for node_id in dag.order
            if queue_map[node_id] in new_set and dag.nodes[node_id].period
        ]
        return DiffResult(
            queue_map=queue_map,
            buffering=buffering,
            sentinel_id=sentinel_id,
            version=dag.version,
            crc32=dag.crc32,
            new_queues=len(new),
            total_nodes=len(dag.order),
            warnings=warnings,
        )
