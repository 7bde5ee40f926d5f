"""Node caches with compute-key isolation.

Each processing node keeps, per (upstream, interval), a ring buffer of the last
``period`` items.  Every cache belongs to one compute context (world, execution
domain, as_of, partition).  By default a cache is *isolated*: switching it to another
context drops the old context's data, so nothing of it is ever served and there is
nothing to count.  A cache shared between contexts (``isolated=False``, the SDK's
counterpart of ``dagmanager.namespace_queues: false``) keeps its data; the first read
that serves it under the new context is the breach ``cross_context_cache_hit_total``
counts, with all five labels of the reading context (``__unset__`` for missing values).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from qmtl.foundation.contracts import ComputeContext
from qmtl.runtime.sdk import metrics

__all__ = ["CacheView", "ComputeContext", "NodeCache"]


def _item_size(item: tuple[float, Any]) -> int:
    value = item[1]
    size = sys.getsizeof(item) + sys.getsizeof(item[0]) + sys.getsizeof(value)
    if isinstance(value, Mapping):
        size += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        size += sum(sys.getsizeof(v) for v in value)
    return size


class CacheView(Mapping[str, Mapping[int, list[tuple[float, Any]]]]):
    """Read-only view handed to ``compute_fn``: ``view[upstream_id][interval]`` -> items.

    Every lookup of an (upstream, interval) window counts as a cache read.
    """

    __slots__ = ("_cache",)

    def __init__(self, cache: NodeCache) -> None:
        self._cache = cache

    def __getitem__(self, upstream_id: str) -> Mapping[int, list[tuple[float, Any]]]:
        if self._cache.foreign is not None:
            self._cache.served()
        return _UpstreamView(self._cache, upstream_id)

    def __iter__(self) -> Iterator[str]:
        return iter({u for u, _ in self._cache.buffers})

    def __len__(self) -> int:
        return len({u for u, _ in self._cache.buffers})

    def __contains__(self, upstream_id: object) -> bool:
        return any(u == upstream_id and b for (u, _), b in self._cache.buffers.items())

    def window(self, upstream_id: str, interval: int) -> list[tuple[float, Any]]:
        return self[upstream_id][interval]

    def values(self, upstream_id: str | None = None, interval: int | None = None) -> list[Any]:  # type: ignore[override]
        """Payload values of one upstream (default: the first), oldest first."""
        cache = self._cache
        if cache.foreign is not None:
            cache.served()
        upstream, buffer = cache.pick(upstream_id, interval)
        metrics.read_stats(upstream, buffer[0]).hit()
        return [v for _, v in buffer[1]]


class _UpstreamView(Mapping[int, list[tuple[float, Any]]]):
    __slots__ = ("_cache", "_upstream")

    def __init__(self, cache: NodeCache, upstream: str) -> None:
        self._cache = cache
        self._upstream = upstream

    def __getitem__(self, interval: int) -> list[tuple[float, Any]]:
        if self._cache.foreign is not None:
            self._cache.served()
        buffer = self._cache.buffers[(self._upstream, interval)]
        metrics.read_stats(self._upstream, interval).hit()
        return list(buffer)

    def __iter__(self) -> Iterator[int]:
        return iter(i for u, i in self._cache.buffers if u == self._upstream)

    def __len__(self) -> int:
        return sum(1 for u, _ in self._cache.buffers if u == self._upstream)


class NodeCache:
    """Ring buffers of one node, owned by one compute context at a time."""

    def __init__(
        self,
        node_id: str,
        period: int,
        context: ComputeContext | None = None,
        *,
        isolated: bool = True,
    ) -> None:
        if period < 1:
            raise ValueError(f"node {node_id}: period must be at least 1, got {period}")
        self.node_id = node_id
        self.period = period
        self.context = context or ComputeContext()
        self.isolated = isolated
        #: The context whose data a shared cache still holds after a switch (None: none).
        self.foreign: ComputeContext | None = None
        self.buffers: dict[tuple[str, int], deque[tuple[float, Any]]] = {}
        self.view = CacheView(self)
        metrics.register_cache(node_id, self)

    def ensure_context(self, context: ComputeContext) -> None:
        """Switch to ``context``.  Isolated: the old context's data goes, unseen.  Shared:
        it stays, and the first read serving it is counted (:meth:`served`)."""
        if context == self.context:
            return
        if any(self.buffers.values()):
            if self.isolated:
                for buffer in self.buffers.values():
                    buffer.clear()
                self.foreign = None
            elif self.foreign is None:
                self.foreign = self.context
        if self.foreign == context:  # back to the data's own context before any read
            self.foreign = None
        self.context = context

    def served(self) -> None:
        """A read under :attr:`context` of data another context left: the breach."""
        foreign, self.foreign = self.foreign, None
        if foreign is not None and any(self.buffers.values()):
            context = self.context
            metrics.observe_cross_context_hit(
                self.node_id, context.world_id, context.execution_domain, context.as_of,
                context.partition,
            )  # fmt: skip

    def buffer(self, upstream_id: str, interval: int) -> deque[tuple[float, Any]]:
        """The ring buffer of one (upstream, interval); created on first use."""
        buffer = self.buffers.get((upstream_id, interval))
        if buffer is None:
            buffer = self.buffers[(upstream_id, interval)] = deque(maxlen=self.period)
        return buffer

    def append(self, upstream_id: str, interval: int, timestamp: float, value: Any) -> None:
        self.buffer(upstream_id, interval).append((timestamp, value))

    def pick(
        self, upstream_id: str | None, interval: int | None
    ) -> tuple[str, tuple[int, deque[tuple[float, Any]]]]:
        for (upstream, iv), buffer in self.buffers.items():
            if (upstream_id is None or upstream == upstream_id) and (
                interval is None or iv == interval
            ):
                return upstream, (iv, buffer)
        raise KeyError(
            f"node {self.node_id}: no cached data for upstream {upstream_id} interval {interval}"
        )

    def ready(self) -> bool:
        """True once every buffer holds ``period`` items (warm-up finished)."""
        return bool(self.buffers) and all(len(b) == self.period for b in self.buffers.values())

    def resident_bytes(self) -> int:
        return sum(
            _item_size(item) for buffer in list(self.buffers.values()) for item in list(buffer)
        )

    def purge(self) -> int:
        """Drop all cached items (``qmtl ops cache purge``); returns how many were dropped."""
        dropped = sum(len(b) for b in self.buffers.values())
        for buffer in self.buffers.values():
            buffer.clear()
        return dropped

    def close(self) -> None:
        self.purge()
        metrics.unregister_cache(self.node_id)
