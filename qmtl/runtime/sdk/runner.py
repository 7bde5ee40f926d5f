"""Run a strategy's DAG: offline over history, or fed item by item.

    class Cross(Strategy):
        def setup(self):
            price = StreamInput(tags=["btc"], interval=60, period=20)
            fast = ProcessingNode(input=price, compute_fn=sma(5), name="fast", period=20)
            slow = ProcessingNode(input=price, compute_fn=sma(20), name="slow", period=20)
            self.add_nodes(price, fast, slow)

    result = Runner.offline(Cross, data={...})

The executor is the SDK's hot path: per node execution it appends to a ring buffer,
calls ``compute_fn`` and updates plain-number metrics slots; it creates no span per
execution (one span per run; per-node spans only with ``trace_nodes=True`` and a
sampled trace).
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qmtl.foundation.dag import SCHEMA
from qmtl.foundation.tracing import exemplar, get_tracer
from qmtl.runtime.sdk import metrics
from qmtl.runtime.sdk.backfill import BackfillEngine
from qmtl.runtime.sdk.cache import ComputeContext, NodeCache
from qmtl.runtime.sdk.node import Node, ProcessingNode, StreamInput
from qmtl.runtime.sdk.telemetry import ensure_tracing

__all__ = ["Executor", "RunResult", "Runner", "Strategy"]

log = logging.getLogger(__name__)
_tracer = get_tracer("qmtl.sdk")
_perf = time.perf_counter
_FIRST_BOUND = metrics.FIRST_BOUND


class Strategy:
    """Subclass and build nodes in :meth:`setup`, registering them with :meth:`add_nodes`."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def setup(self) -> None:
        raise NotImplementedError(
            f"{type(self).__name__}.setup() must create nodes and call add_nodes()"
        )

    def add_nodes(self, *nodes: Node) -> None:
        for node in nodes:
            if node not in self.nodes:
                self.nodes.append(node)

    @property
    def name(self) -> str:
        return type(self).__name__

    def ordered_nodes(self) -> list[Node]:
        """Nodes in dependency order (inputs first), including inputs not added explicitly."""
        seen: dict[int, Node] = {}

        def visit(node: Node, path: tuple[int, ...]) -> None:
            if id(node) in path:
                raise ValueError(f"strategy {self.name}: cycle through node {node.name}")
            if id(node) in seen:
                return
            for upstream in node.inputs:
                visit(upstream, (*path, id(node)))
            seen[id(node)] = node

        for node in self.nodes:
            visit(node, ())
        return list(seen.values())

    def dag(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "strategy": self.name,
            "nodes": [n.definition() for n in self.ordered_nodes()],
        }

    def dag_json(self) -> str:
        return json.dumps(self.dag(), sort_keys=True)


@dataclass
class RunResult:
    strategy: str
    events: int = 0
    executions: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    last_outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class _Step:
    node: ProcessingNode
    node_id: str
    cache: NodeCache
    fn: Callable[[Any], Any]
    #: (upstream id, its ring buffer in this node's cache), resolved once.
    buffers: tuple[tuple[str, deque[tuple[float, Any]]], ...]
    stats: metrics.NodeStats
    view: Any
    buckets: list[int]  # stats.buckets, one attribute hop closer to the hot loop


class Executor:
    """Feeds items into a DAG and runs every downstream node in dependency order."""

    def __init__(
        self,
        nodes: Iterable[Node],
        context: ComputeContext | None = None,
        *,
        metrics_enabled: bool = True,
        trace_nodes: bool = False,
        isolate_contexts: bool = True,
    ) -> None:
        self.nodes = list(nodes)
        self.context = context or ComputeContext()
        #: False shares each node's cache between compute contexts (as
        #: ``dagmanager.namespace_queues: false`` shares queues): serving one context's data
        #: to another is then possible, and counted as a cross-context hit.
        self.isolate_contexts = isolate_contexts
        self.metrics_enabled = metrics_enabled
        self.trace_nodes = trace_nodes
        self.result = RunResult(strategy="")
        self.caches: dict[str, NodeCache] = {}
        order = self.nodes
        children: dict[str, list[Node]] = {n.node_id: [] for n in order}
        for node in order:
            for upstream in node.inputs:
                children[upstream.node_id].append(node)
        position = {n.node_id: i for i, n in enumerate(order)}
        self.plans: dict[str, list[_Step]] = {}
        for source in (n for n in order if isinstance(n, StreamInput)):
            descendants: dict[str, Node] = {}
            frontier: list[Node] = [source]
            while frontier:
                for child in children[frontier.pop().node_id]:
                    if child.node_id not in descendants:
                        descendants[child.node_id] = child
                        frontier.append(child)
            steps = []
            for node in sorted(descendants.values(), key=lambda n: position[n.node_id]):
                if not isinstance(node, ProcessingNode):
                    continue
                cache = self._cache_for(node)
                steps.append(
                    _Step(
                        node=node,
                        node_id=node.node_id,
                        cache=cache,
                        fn=node.compute_fn,  # type: ignore[arg-type]
                        buffers=tuple(
                            (u.node_id, cache.buffer(u.node_id, u.interval or 0))
                            for u in node.inputs
                        ),
                        stats=(stats := metrics.node_stats(node.node_id, acquire=True)),
                        view=cache.view,
                        buckets=stats.buckets,
                    )
                )
            self.plans[source.node_id] = steps
        self._reads = sorted(
            {
                (u.node_id, u.interval or 0)
                for steps in self.plans.values()
                for step in steps
                for u in step.node.inputs
            }
        )
        for upstream_id, interval in self._reads:
            metrics.read_stats(upstream_id, interval, acquire=True)
        self._closed = False

    def _cache_for(self, node: ProcessingNode) -> NodeCache:
        cache = self.caches.get(node.node_id)
        if cache is None:
            cache = self.caches[node.node_id] = NodeCache(
                node.node_id, node.period or 1, self.context, isolated=self.isolate_contexts
            )
        return cache

    def set_context(self, context: ComputeContext) -> None:
        """Run later items under ``context``.  Isolated caches drop another context's data
        unseen; shared ones count a cross-context hit when they serve it."""
        self.context = context
        for cache in self.caches.values():
            cache.ensure_context(context)

    def feed(self, source: StreamInput, timestamp: float, payload: Any) -> dict[str, Any]:
        """Push one item from ``source``; returns what every node produced for it."""
        if source.event_service is not None:
            source.event_service.record(source.name, timestamp, payload)
        produced: dict[str, Any] = {source.node_id: payload}
        result = self.result
        result.events += 1
        measure = self.metrics_enabled and not self.trace_nodes
        # One clock read per execution: a step's end is the next step's start, so a
        # node's duration also covers feeding its inputs (well under a microsecond,
        # far below the first 1 ms bucket).  Two reads would cost ~10% of an execution.
        clock = _perf() if measure else 0.0
        for step in self.plans[source.node_id]:
            fed = False
            for upstream_id, buffer in step.buffers:
                if upstream_id in produced:
                    buffer.append((timestamp, produced[upstream_id]))
                    fed = True
            if not fed:
                continue
            if measure:
                # Hot path: the histogram update of NodeStats.observe, inlined.
                try:
                    out = step.fn(step.view)
                except Exception as exc:
                    step.stats.failures += 1
                    self._failed(step, exc)
                    out = None
                now = _perf()
                elapsed = (now - clock) * 1000.0
                clock = now
                step.stats.sum_ms += elapsed
                if elapsed <= _FIRST_BOUND:
                    step.buckets[0] += 1
                else:
                    step.stats.observe_bucket(elapsed)
            else:
                # Traced (or unmeasured) executions: one span per node, the same metrics.
                started = _perf()
                traced: dict[str, str] | None = None
                try:
                    if self.trace_nodes:
                        with _tracer.start_as_current_span(
                            "sdk.node", attributes={"qmtl.node_id": step.node_id}
                        ) as span:
                            traced = exemplar(span)
                            out = step.fn(step.view)
                    else:
                        out = step.fn(step.view)
                except Exception as exc:
                    if self.metrics_enabled:
                        step.stats.failures += 1
                    self._failed(step, exc)
                    out = None
                if self.metrics_enabled:
                    step.stats.observe_traced((_perf() - started) * 1000.0, traced)
            result.executions += 1
            if out is not None:
                produced[step.node_id] = out
                result.last_outputs[step.node_id] = out
        return produced

    def _failed(self, step: _Step, exc: Exception) -> None:
        result = self.result
        result.failures[step.node_id] = count = result.failures.get(step.node_id, 0) + 1
        if count == 1 or count % 1000 == 0:
            log.warning(
                "node.failure node_id=%s name=%s failures=%d error=%s: %s",
                step.node_id, step.node.name, count, type(exc).__name__, exc,
            )  # fmt: skip

    def close(self) -> None:
        """Release caches and this executor's metric series (bounded cardinality)."""
        if self._closed:
            return
        self._closed = True
        for cache in self.caches.values():
            cache.close()
        for steps in self.plans.values():
            for step in steps:
                metrics.release_node(step.node_id)
        for upstream, interval in self._reads:
            metrics.release_reads(upstream, interval)


class Runner:
    """Entry points to run strategies."""

    @staticmethod
    def build(strategy: Strategy | type[Strategy]) -> Strategy:
        instance = strategy() if isinstance(strategy, type) else strategy
        if not instance.nodes:
            instance.setup()
        if not instance.nodes:
            raise ValueError(f"strategy {instance.name} added no nodes in setup()")
        return instance

    @staticmethod
    def offline(
        strategy: Strategy | type[Strategy],
        *,
        data: Mapping[StreamInput, Iterable[tuple[float, Any]]] | None = None,
        start: float = 0.0,
        end: float | None = None,
        context: ComputeContext | None = None,
        metrics_enabled: bool = True,
        trace_nodes: bool = False,
        backfill: BackfillEngine | None = None,
        keep_caches: bool = False,
    ) -> RunResult:
        """Replay history through the DAG in timestamp order.

        Items come from ``data[stream]`` when given, else from the stream's
        ``history_provider(start, end)`` through ``backfill`` (retries, metrics).
        """
        ensure_tracing()
        instance = Runner.build(strategy)
        nodes = instance.ordered_nodes()
        executor = Executor(
            nodes, context, metrics_enabled=metrics_enabled, trace_nodes=trace_nodes
        )
        executor.result.strategy = instance.name
        engine = backfill or BackfillEngine()
        stop = end if end is not None else time.time()
        feeds = []
        for stream in (n for n in nodes if isinstance(n, StreamInput)):
            if data is not None and stream in data:
                items: Iterable[tuple[float, Any]] = data[stream]
            elif stream.history_provider is not None:
                items = engine.run(stream, start, stop)
            else:
                raise ValueError(f"stream {stream.name} has no data and no history_provider")
            feeds.append(((ts, i, stream, payload) for i, (ts, payload) in enumerate(items)))
        started = time.perf_counter()
        with _tracer.start_as_current_span("sdk.run", attributes={"qmtl.strategy": instance.name}):
            for ts, _, stream, payload in heapq.merge(*feeds, key=lambda item: (item[0], item[1])):
                executor.feed(stream, ts, payload)
        executor.result.seconds = time.perf_counter() - started
        if not keep_caches:
            executor.close()
        return executor.result
