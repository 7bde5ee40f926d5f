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

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from qmtl.foundation.common import AsyncCircuitBreaker, CircuitOpenError
from qmtl.foundation.config import DagManagerConfig
from qmtl.foundation.dag import Dag, DagError, compute_key, parse_dag
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


#: Parsed plans kept for re-submissions, bounded by their total node count.
PLAN_CACHE_NODES = 200_000


@dataclass(frozen=True)
class _Plan:
    dag: Dag
    queue_map: dict[str, str]  # node id -> queue
    planned: dict[str, tuple[str, str]]  # queue -> (node id, compute key)
    queues: list[str]


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
        self._plans: OrderedDict[tuple[Any, ...], _Plan] = OrderedDict()
        self._plan_nodes = 0
        self._plans_lock = threading.Lock()

    def _plan(self, req: DiffRequestData) -> _Plan:
        """Parse, hash and name queues -- cached, since identical re-submissions are common."""
        digest = hashlib.blake2b(req.dag_json.encode(), digest_size=16).digest()
        key = (
            digest,
            req.world_id,
            req.execution_domain,
            req.as_of,
            req.partition,
            self.config.namespace_queues,
        )
        with self._plans_lock:
            cached = self._plans.get(key)
            if cached is not None:
                self._plans.move_to_end(key)
                return cached
        try:
            dag = parse_dag(req.dag_json, max_bytes=self.config.max_dag_bytes)
        except DagError as exc:
            raise InvalidDag(str(exc)) from None
        queue_map: dict[str, str] = {}
        planned: dict[str, tuple[str, str]] = {}
        for node_id in dag.order:
            queue = queue_name(
                dag.nodes[node_id], world_id=req.world_id, domain=req.execution_domain,
                namespace=self.config.namespace_queues,
            )  # fmt: skip
            queue_map[node_id] = queue
            planned[queue] = (
                node_id,
                compute_key(node_id, req.world_id, req.execution_domain, req.as_of, req.partition),
            )
        plan = _Plan(dag, queue_map, planned, list(planned))
        with self._plans_lock:
            self._plans[key] = plan
            self._plan_nodes += len(dag.order)
            while self._plan_nodes > PLAN_CACHE_NODES and len(self._plans) > 1:
                _, old = self._plans.popitem(last=False)
                self._plan_nodes -= len(old.dag.order)
        return plan

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
        if len(req.dag_json) > self.config.max_dag_bytes:
            raise InvalidDag(
                f"DAG payload is {len(req.dag_json)} bytes, over the {self.config.max_dag_bytes}-byte "
                "limit; split the strategy or raise dagmanager.max_dag_bytes"
            )
        plan = self._plan(req)
        dag, queue_map, planned, queues = plan.dag, plan.queue_map, plan.planned, plan.queues
        context = {
            "world_id": req.world_id,
            "execution_domain": req.execution_domain or "backtest",
            "as_of": req.as_of,
            "partition": req.partition,
        }
        existing = _guarded(
            self.store_breaker, "graph store lookup", self.store.binding_keys, queues
        )
        collisions = [q for q in queues if q in existing and existing[q][1] != planned[q][0]]
        if collisions:
            raise DiffError(
                f"queue name {collisions[0]} is already bound to node {existing[collisions[0]][1]}, "
                f"not {planned[collisions[0]][0]}; rename the node's asset or bump its version"
            )
        conflicts = [q for q in queues if q in existing and existing[q][0] != planned[q][1]]
        if conflicts:
            for queue in conflicts:
                metrics.cross_context_cache_hit_total.labels(
                    normalize_label(planned[queue][0]),
                    normalize_label(req.world_id),
                    normalize_label(req.execution_domain),
                    normalize_label(req.as_of),
                    normalize_label(req.partition),
                ).inc()
            first = self.store.binding(conflicts[0])
            owner = first.context if first else "another context"
            raise CrossContextViolation(
                f"{len(conflicts)} node(s) would reuse a queue bound to another compute context: "
                f"queue {conflicts[0]} belongs to {owner}, this diff runs under {context}. "
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
        sentinel_id = f"{req.strategy_id}:{dag.version}:sentinel"
        warnings = []
        if self.faults.sentinel_skip:
            # The queue map stays valid; the gap is visible in sentinel_gap_count.
            warnings.append("sentinel not recorded: skipped by fault injection")
            log.warning(
                "diff %s/%s: sentinel not recorded (fault injection)", req.strategy_id, dag.version
            )
        _guarded(
            self.store_breaker,
            "graph store commit",
            partial(
                self.store.commit_diff,
                req.strategy_id,
                dag.version,
                new_bindings,
                None if version_known else queues,
                now,
                sentinel_id=None if self.faults.sentinel_skip else sentinel_id,
            ),
        )

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
