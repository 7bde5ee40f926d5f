"""Strategy building blocks: ``StreamInput`` sources and ``ProcessingNode`` computations.

A node's id is the content hash of its definition (type, interval, period, tags,
inputs, code), computed with the same function the DAG Manager verifies, so identical
computations share queues across strategies.

    price = StreamInput(tags=["btc"], interval=60, period=30)
    fast = ProcessingNode(input=price, compute_fn=lambda v: mean(v.values()), period=5)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from types import CodeType
from typing import Any, Protocol

from qmtl.foundation.dag import node_id_for

__all__ = ["HistoryProvider", "Node", "ProcessingNode", "StreamInput", "code_hash"]


class HistoryProvider(Protocol):
    """Returns ``(timestamp, payload)`` items of ``[start, end)`` for a stream."""

    def __call__(self, start: float, end: float) -> Iterable[tuple[float, Any]]: ...


def _fingerprint(code: CodeType) -> str:
    consts = tuple(_fingerprint(c) if isinstance(c, CodeType) else repr(c) for c in code.co_consts)
    return repr((code.co_code, consts, code.co_names))


def code_hash(fn: Callable[..., Any] | None) -> str:
    """Fingerprint of a compute function: bytecode, constants, closure values, defaults.

    Changing the code changes the node id; so does ``sma(5)`` vs ``sma(20)`` (same
    bytecode, different closure), and two lambdas on one line stay distinct.
    """
    if fn is None:
        return ""
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object (or builtin): its type and state decide
        state = repr(vars(fn)) if hasattr(fn, "__dict__") else repr(fn)
        return hashlib.sha256(f"{type(fn).__qualname__}:{state}".encode()).hexdigest()[:16]
    closure = tuple(
        repr(cell.cell_contents)
        if isinstance(cell.cell_contents, int | float | str | bool | tuple | None)
        else type(cell.cell_contents).__name__
        for cell in (fn.__closure__ or ())
    )
    parts = (_fingerprint(code), closure, repr(getattr(fn, "__defaults__", None)))
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class Node:
    node_type = "Node"

    def __init__(
        self,
        *,
        name: str | None = None,
        inputs: Sequence[Node] = (),
        interval: int | None = None,
        period: int | None = None,
        tags: Sequence[str] = (),
        compute_fn: Callable[..., Any] | None = None,
        config: dict[str, Any] | None = None,
        version: str = "v1",
    ) -> None:
        if interval is not None and (not isinstance(interval, int) or interval <= 0):
            raise ValueError(
                f"{name or self.node_type}: interval must be a positive integer (seconds)"
            )
        if period is not None and (not isinstance(period, int) or period <= 0):
            raise ValueError(f"{name or self.node_type}: period must be a positive integer (items)")
        self.name = name or self.node_type
        self.inputs = list(inputs)
        self.interval = interval
        self.period = period
        self.tags = list(tags)
        self.compute_fn = compute_fn
        self.config = dict(config or {})
        self.version = version
        self._node_id: str | None = None

    def definition(self) -> dict[str, Any]:
        """This node as a DAG-JSON entry (``node_id`` included)."""
        data: dict[str, Any] = {
            "node_type": self.node_type,
            "name": self.name,
            "interval": self.interval,
            "period": self.period,
            "tags": self.tags,
            "inputs": [n.node_id for n in self.inputs],
            "code_hash": code_hash(self.compute_fn),
            "config": self.config,
            "version": self.version,
        }
        if self.tags:
            data["asset"] = self.tags[0]
        elif self.inputs:
            data["asset"] = self.inputs[0].definition().get("asset", "any")
        data["node_id"] = node_id_for(data)
        return data

    @property
    def node_id(self) -> str:
        if self._node_id is None:
            self._node_id = self.definition()["node_id"]
        return self._node_id

    def __repr__(self) -> str:
        return f"<{self.node_type} {self.name} {self.node_id[:12]}>"


class StreamInput(Node):
    """A source of ``(timestamp, payload)`` items, optionally recorded by an event service.

    ``history_provider(start, end)`` supplies history for backfill and offline runs;
    ``event_service`` (an :class:`~qmtl.runtime.io.EventRecorder`) persists every payload.
    """

    node_type = "StreamInput"

    def __init__(
        self,
        *,
        tags: Sequence[str] = (),
        interval: int,
        period: int = 1,
        history_provider: HistoryProvider | None = None,
        event_service: Any | None = None,
        name: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            name=name or (tags[0] if tags else "stream"),
            interval=interval,
            period=period,
            tags=tags,
            config=config,
        )
        self.history_provider = history_provider
        self.event_service = event_service


class ProcessingNode(Node):
    """Runs ``compute_fn(view)`` whenever an input produces an item.

    ``view[upstream.node_id][interval]`` holds the last ``period`` items of each input;
    return ``None`` to emit nothing this time.
    """

    node_type = "ProcessingNode"

    def __init__(
        self,
        *,
        input: Node | Sequence[Node],
        compute_fn: Callable[[Any], Any],
        name: str | None = None,
        interval: int | None = None,
        period: int = 1,
        config: dict[str, Any] | None = None,
        version: str = "v1",
    ) -> None:
        inputs = [input] if isinstance(input, Node) else list(input)
        if not inputs:
            raise ValueError(f"{name or 'ProcessingNode'}: needs at least one input")
        if not callable(compute_fn):
            raise TypeError(f"{name or 'ProcessingNode'}: compute_fn must be callable")
        super().__init__(
            name=name or getattr(compute_fn, "__name__", "ProcessingNode"),
            inputs=inputs,
            interval=interval or inputs[0].interval,
            period=period,
            compute_fn=compute_fn,
            config=config,
            version=version,
        )
