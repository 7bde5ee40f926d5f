"""The diff: validate a DAG, bind every node to a queue under its compute key.

Plain synchronous Python (the gRPC handler runs it in a worker thread).  Cost is
linear in the number of nodes: one parse, one hash per node, one batched lookup, at
most one batched topic creation and one store transaction.

Failures are domain errors (:mod:`qmtl.foundation.errors`), mapped once by each adapter:

* ``InvalidDag`` / ``InvalidRequest`` -- malformed JSON, cycles, unknown inputs, bounds;
* ``CrossContextViolation`` -- a queue already bound under another compute key (only
  possible where isolation was turned off: ``dagmanager.namespace_queues: false``);
* ``QueueNameCollision`` -- two different nodes would share one queue name;
* ``QueueCreationFailed`` / ``BackendUnavailable`` -- the backends refused or are down.

Compute-key isolation is the default: queue names carry their context's namespace, so
the same DAG under (world, domain, as_of, partition) A and B gets separate queues.

Replicas: a diff creates its new topics first (idempotently: a racing replica gets
"already exists"), then locks those names in the graph store (advisory locks on
PostgreSQL) and binds only the ones still unbound (the store reports which rows it
wrote; the rest are checked like any existing binding) -- two replicas diffing the same
DAG at once return the same queue map, each topic is created once on the broker, and no
database connection waits on the broker.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from qmtl.foundation import crosscontext
from qmtl.foundation.breaker import AsyncCircuitBreaker, CircuitOpenError
from qmtl.foundation.config import DagManagerConfig
from qmtl.foundation.contracts import BufferInstruction, DiffResult, SubmissionRequest
from qmtl.foundation.dag import DagError, parse_dag
from qmtl.foundation.errors import (
    BackendUnavailable,
    CrossContextViolation,
    InvalidDag,
    QmtlError,
    QueueCreationFailed,
    QueueNameCollision,
)
from qmtl.foundation.sqldb import WouldBlock
from qmtl.services.dagmanager import metrics
from qmtl.services.dagmanager.queues import QueueBackend, context_namespace, queue_name
from qmtl.services.dagmanager.store import Bound, GraphStore

__all__ = ["DiffEngine", "PlanCache", "guarded"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def guarded(breaker: AsyncCircuitBreaker, what: str, fn: Callable[..., T], *args: Any) -> T:
    """Run a backend call under ``breaker`` from synchronous code.

    Domain errors pass through uncounted (they are the caller's problem, or another
    breaker's); any other exception counts as a backend failure.
    """
    try:
        breaker.check()
    except CircuitOpenError as exc:
        raise BackendUnavailable(f"{what}: {exc}") from None
    try:
        result = fn(*args)
    except (QmtlError, WouldBlock):  # WouldBlock: the caller runs the diff again in a thread
        raise
    except Exception as exc:
        breaker.record_failure()
        raise BackendUnavailable(f"{what} failed: {exc}") from exc
    breaker.record_success()
    return result


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a diff needs of a parsed DAG, and nothing else (no raw JSON kept)."""

    version: str
    crc32: int
    order: tuple[str, ...]
    queue_map: dict[str, str]  # node id -> queue
    planned: dict[str, tuple[str, str]]  # queue -> (node id, compute key)
    buffers: dict[str, tuple[int, int]]  # node id -> (period, interval), nodes with a period
    ctx: str  # the deployment's context (its queue namespace; empty when queues are shared)
    nbytes: int


#: CPython's size of an ASCII str object beyond its characters, and of a 2-tuple.
_STR_OVERHEAD = sys.getsizeof("")
_PAIR = sys.getsizeof((1, 2))


def _plan_bytes(plan_parts: tuple[Any, ...]) -> int:
    """Estimated resident bytes of a plan: containers plus the strings they hold.

    Strings are ASCII (ids, hashes, cleaned queue names), so their size is known from
    their length; asking ``sys.getsizeof`` of each cost a millisecond per 1,000 nodes.
    """
    order, queue_map, planned, buffers = plan_parts
    n = len(order)
    size = sys.getsizeof(order) + sys.getsizeof(queue_map) + sys.getsizeof(planned)
    size += n * _STR_OVERHEAD + sum(map(len, order))  # node ids (shared by the maps)
    size += n * _STR_OVERHEAD + sum(map(len, queue_map.values()))  # queue names
    size += len(planned) * (_PAIR + _STR_OVERHEAD + 32)  # (node id, 32-char compute key)
    size += sys.getsizeof(buffers) + 72 * len(buffers)
    return size + 256


class PlanCache:
    """Parsed plans of recent DAGs, bounded by an estimated byte budget (LRU)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._plans: OrderedDict[tuple[Any, ...], _Plan] = OrderedDict()
        self.nbytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> _Plan | None:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
            return plan

    def put(self, key: tuple[Any, ...], plan: _Plan) -> None:
        if plan.nbytes > self.budget_bytes:
            return
        with self._lock:
            old = self._plans.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._plans[key] = plan
            self.nbytes += plan.nbytes
            while self.nbytes > self.budget_bytes and self._plans:
                _, evicted = self._plans.popitem(last=False)
                self.nbytes -= evicted.nbytes
            entries, nbytes = len(self._plans), self.nbytes
        metrics.dagmanager_plan_cache_entries.set(entries)
        metrics.dagmanager_plan_cache_bytes.set(nbytes)

    def __len__(self) -> int:
        return len(self._plans)


class DiffEngine:
    def __init__(
        self,
        store: GraphStore,
        queues: QueueBackend,
        config: DagManagerConfig,
        *,
        store_breaker: AsyncCircuitBreaker,
        queue_breaker: AsyncCircuitBreaker,
    ) -> None:
        self.store = store
        self.queues = queues
        self.config = config
        self.store_breaker = store_breaker
        self.queue_breaker = queue_breaker
        self.plans = PlanCache(config.plan_cache_bytes)

    def _plan(self, req: SubmissionRequest) -> _Plan:
        """Parse, hash and name queues -- cached, since identical re-submissions are common."""
        digest = hashlib.blake2b(req.dag_json.encode(), digest_size=16).digest()
        isolated = self.config.namespace_queues
        key = (digest, req.world_id, req.execution_domain, req.as_of, req.partition, isolated)
        cached = self.plans.get(key)
        if cached is not None:
            return cached
        try:
            dag = parse_dag(req.dag_json, max_bytes=self.config.max_dag_bytes)
        except DagError as exc:
            raise InvalidDag(str(exc)) from None
        context = req.context
        namespace = (
            context_namespace(req.world_id, req.execution_domain, req.as_of, req.partition)
            if isolated
            else ""
        )
        queue_map: dict[str, str] = {}
        planned: dict[str, tuple[str, str]] = {}
        buffers: dict[str, tuple[int, int]] = {}
        compute_key = context.key_function()
        for node_id in dag.order:
            node = dag.nodes[node_id]
            queue = queue_name(node, namespace=namespace)
            queue_map[node_id] = queue
            if queue in planned:
                raise QueueNameCollision(
                    f"nodes {planned[queue][0]} and {node_id} of this DAG map to one queue "
                    f"{queue}; give one of them another asset or version"
                )
            planned[queue] = (node_id, compute_key(node_id))
            if node.period:
                buffers[node_id] = (node.period, node.interval or 0)
        parts = (dag.order, queue_map, planned, buffers)
        plan = _Plan(dag.version, dag.crc32, *parts, ctx=namespace, nbytes=_plan_bytes(parts))
        self.plans.put(key, plan)
        return plan

    def diff(self, request: SubmissionRequest) -> DiffResult:
        """Run one diff and record its metrics, whatever the outcome."""
        started = time.perf_counter()
        try:
            result = self._diff(request)
        except WouldBlock:
            raise  # not a diff yet: the caller runs it again where it may wait
        except BaseException:
            metrics.observe_diff((time.perf_counter() - started) * 1000.0, failed=True)
            raise
        metrics.observe_diff((time.perf_counter() - started) * 1000.0, failed=False)
        return result

    def _check_bindings(
        self,
        req: SubmissionRequest,
        plan: _Plan,
        existing: Mapping[str, Bound],
        cur: Any = None,
    ) -> None:
        """Refuse queues bound to another node (collision) or another context (violation)."""
        for queue, bound in existing.items():
            planned_node = plan.planned[queue][0]
            if bound.node_id != planned_node:
                raise QueueNameCollision(
                    f"queue {queue} is already bound to node {bound.node_id}, not "
                    f"{planned_node}; rename the node's asset or bump its version"
                )
        conflicts = [q for q, b in existing.items() if b.compute_key != plan.planned[q][1]]
        if not conflicts:
            return
        for queue in conflicts:
            crosscontext.observe_hit(
                plan.planned[queue][0], req.world_id, req.execution_domain, req.as_of,
                req.partition,
            )  # fmt: skip
        first = self.store.binding(conflicts[0], cur)
        owner = first.context if first else "another context"
        raise CrossContextViolation(
            f"{len(conflicts)} node(s) would reuse a queue bound to another compute context: "
            f"queue {conflicts[0]} belongs to {owner}, this diff runs under "
            f"{req.context.as_dict()}. Queues are shared because dagmanager.namespace_queues "
            "is false; turn isolation back on or submit with the original context, and see "
            "the CrossContextCacheHit runbook"
        )

    def _create(self, queues: list[str]) -> None:
        outcome = guarded(self.queue_breaker, "queue backend", self.queues.create, queues)
        failures = {q: err for q, err in outcome.items() if err}
        if failures:
            metrics.queue_create_error_total.inc(len(failures))
            queue, error = next(iter(failures.items()))
            raise QueueCreationFailed(
                f"{len(failures)} of {len(queues)} queue(s) could not be created "
                f"(first: {queue}: {error})"
            )

    def _diff(self, req: SubmissionRequest) -> DiffResult:
        if len(req.dag_json) > self.config.max_dag_bytes:
            raise InvalidDag(
                f"DAG payload is {len(req.dag_json)} bytes, over the {self.config.max_dag_bytes}"
                "-byte limit; split the strategy or raise dagmanager.max_dag_bytes"
            )
        plan = self._plan(req)
        queues = list(plan.planned)
        found = guarded(
            self.store_breaker, "graph store lookup", self.store.diff_lookup, queues,
            req.strategy_id, plan.ctx, plan.version,
        )  # fmt: skip
        existing = found.bound
        self._check_bindings(req, plan, existing)
        # The submission id names this diff: a run of the same submission again (its
        # Gateway replica died before answering) finds the queues its first run bound
        # and reports them as its own, new ones -- the same answer as the first run.
        origin = req.submission_id()
        own = [q for q, b in existing.items() if b.created_by == origin]
        new = [q for q in queues if q not in existing]
        sentinel_id = f"{req.strategy_id}:{plan.version}:sentinel"
        context = req.context.as_dict()
        now = time.time()

        if new:
            # Topics first, outside any transaction: creation is idempotent on the backend
            # (a replica racing us gets "already exists"), and a slow broker must not hold
            # a database connection or lock.
            self._create(new)

        def commit() -> list[str]:
            bound: list[str] = []
            with self.store.transaction() as cur:
                if new:
                    # Another diff (here or on a replica) may bind some of them between
                    # our lookup and this transaction: under the lock, bind the rest and
                    # check who holds the ones left out (collisions, other contexts).
                    self.store.lock_queues(cur, new)
                    planned = [(q, *plan.planned[q]) for q in new]
                    written = self.store.bind(cur, planned, context, now, found, origin)
                    taken = [q for q in new if q not in written]
                    if taken:
                        holders = self.store.lookup(cur, taken)
                        self._check_bindings(req, plan, holders, cur)
                        written |= {q for q, b in holders.items() if b.created_by == origin}
                    bound = [q for q in new if q in written]
                self.store.write_diff(
                    cur, req.strategy_id, plan.ctx, plan.version,
                    None if found.version_known else queues, now, sentinel_id=sentinel_id,
                )  # fmt: skip
            return bound

        created = guarded(self.store_breaker, "graph store commit", commit) + own
        created_set = set(created)
        buffering = tuple(
            BufferInstruction(node_id, period, interval)
            for node_id in plan.order
            if plan.queue_map[node_id] in created_set
            for period, interval in (plan.buffers.get(node_id, (0, 0)),)
            if period
        )
        return DiffResult(
            queue_map=plan.queue_map,
            buffering=buffering,
            sentinel_id=sentinel_id,
            version=plan.version,
            crc32=plan.crc32,
            new_queues=len(created),
            total_nodes=len(plan.order),
        )
