"""The DAG wire format shared by the SDK (which builds it) and the DAG Manager (which diffs it).

A DAG is JSON::

    {"schema": "qmtl.dag/v1",
     "nodes": [{"node_id": "N...", "node_type": "StreamInput", "name": "btc",
                "interval": 60, "period": 20, "tags": ["btc"], "inputs": [],
                "code_hash": "", "config": {}, "version": "v1"}]}

``node_id`` is a content hash of the node's definition (everything but ``name``), so
the same computation gets the same id -- and the same queue -- in every strategy.
Inputs refer to upstream node ids; the hash covers them, so a changed upstream changes
every node downstream of it.

:func:`parse_dag` validates in linear time (Kahn's algorithm) and raises
:class:`DagError` with a message naming the node and the problem.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SCHEMA",
    "Dag",
    "DagError",
    "DagNode",
    "compute_key",
    "dag_crc32",
    "node_id_for",
    "parse_dag",
]

SCHEMA = "qmtl.dag/v1"
_HASHED_FIELDS = (
    "node_type",
    "interval",
    "period",
    "tags",
    "inputs",
    "code_hash",
    "config",
    "version",
)


class DagError(ValueError):
    """The DAG is malformed; the message says which node and what to fix."""


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def node_id_for(definition: Mapping[str, Any]) -> str:
    """Content hash of a node definition (``name`` and ``node_id`` are not part of it).

    Fields are joined with a unit separator in a fixed order; only ``config`` (free-form)
    goes through canonical JSON.  This runs once per node per diff, so it stays cheap.
    """
    config = definition.get("config")
    parts = (
        str(definition.get("node_type", "")),
        str(definition.get("interval")),
        str(definition.get("period")),
        "\x1e".join(sorted(str(t) for t in definition.get("tags") or ())),
        "\x1e".join(str(i) for i in definition.get("inputs") or ()),
        str(definition.get("code_hash") or ""),
        _canonical(config).decode() if config else "",
        str(definition.get("version") or "v1"),
    )
    return "N" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def compute_key(
    node_id: str,
    world_id: str | None,
    execution_domain: str | None,
    as_of: str | None,
    partition: str | None,
) -> str:
    """Isolation key: a cache entry or queue binding is reused only under the same key.

    A missing execution domain counts as ``backtest``.
    """
    parts = [node_id, world_id or "", execution_domain or "backtest", as_of or "", partition or ""]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass(slots=True)
class DagNode:
    node_id: str
    node_type: str
    name: str
    interval: int | None
    period: int | None
    tags: tuple[str, ...]
    inputs: tuple[str, ...]
    version: str
    asset: str
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Dag:
    nodes: dict[str, DagNode]
    #: Node ids in a deterministic topological order (ties broken by id).
    order: tuple[str, ...]
    version: str
    crc32: int


def dag_crc32(order: Sequence[str]) -> int:
    """CRC32 over node ids in topological order, as the diff reply carries it."""
    crc = 0
    for node_id in order:
        crc = zlib.crc32(node_id.encode(), crc)
    return crc


def _int_or_none(value: Any, what: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DagError(f"{where}: {what} must be a non-negative integer, got {value!r}")
    return value


def parse_dag(text: str | bytes, *, max_bytes: int | None = None, verify_ids: bool = True) -> Dag:
    """Parse and validate DAG JSON; raise :class:`DagError` on any problem."""
    size = len(text)
    if max_bytes is not None and size > max_bytes:
        raise DagError(
            f"DAG payload is {size} bytes, over the {max_bytes}-byte limit; split the strategy "
            "or raise dagmanager.max_dag_bytes"
        )
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DagError(f"DAG is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise DagError('DAG must be a JSON object with a "nodes" list')
    schema = data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise DagError(f"unsupported DAG schema {schema!r}; expected {SCHEMA!r}")
    if not data["nodes"]:
        raise DagError("DAG has no nodes")

    nodes: dict[str, DagNode] = {}
    for index, raw in enumerate(data["nodes"]):
        where = f"nodes[{index}]"
        if not isinstance(raw, dict):
            raise DagError(f"{where}: each node must be a JSON object")
        node_type = raw.get("node_type")
        if not isinstance(node_type, str) or not node_type:
            raise DagError(f"{where}: node_type is required")
        inputs = raw.get("inputs") or []
        tags = raw.get("tags") or []
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise DagError(f"{where}: inputs must be a list of node ids")
        if not isinstance(tags, list):
            raise DagError(f"{where}: tags must be a list")
        expected = node_id_for(raw)
        node_id = raw.get("node_id") or expected
        if verify_ids and node_id != expected:
            raise DagError(
                f"{where}: node_id {node_id!r} does not match its definition (expected {expected}); "
                "node ids are content hashes, recompute them with qmtl.foundation.dag.node_id_for"
            )
        if node_id in nodes:
            raise DagError(f"{where}: duplicate node {node_id}")
        name = str(raw.get("name") or node_type)
        nodes[node_id] = DagNode(
            node_id=node_id,
            node_type=node_type,
            name=name,
            interval=_int_or_none(raw.get("interval"), "interval", where),
            period=_int_or_none(raw.get("period"), "period", where),
            tags=tuple(str(t) for t in tags),
            inputs=tuple(inputs),
            version=str(raw.get("version") or "v1"),
            asset=str(raw.get("asset") or (tags[0] if tags else "any")),
            raw=raw,
        )

    indegree = dict.fromkeys(nodes, 0)
    children: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for node in nodes.values():
        for upstream in node.inputs:
            if upstream not in nodes:
                raise DagError(
                    f"node {node.node_id} ({node.name}) refers to unknown input {upstream}"
                )
            indegree[node.node_id] += 1
            children[upstream].append(node.node_id)
    ready = [node_id for node_id, degree in indegree.items() if degree == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        current = heapq.heappop(ready)
        order.append(current)
        for child in children[current]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(nodes):
        stuck = sorted(n for n, d in indegree.items() if d > 0)
        names = ", ".join(f"{n} ({nodes[n].name})" for n in stuck[:5])
        raise DagError(f"DAG has a cycle through {len(stuck)} node(s): {names}")

    version = str(data.get("version") or "")
    if not version:
        version = "v" + hashlib.sha256("".join(order).encode()).hexdigest()[:12]
    return Dag(nodes=nodes, order=tuple(order), version=version, crc32=dag_crc32(order))
