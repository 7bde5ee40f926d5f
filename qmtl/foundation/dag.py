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
import itertools
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qmtl.foundation import strictjson
from qmtl.foundation.contracts import compute_key
from qmtl.foundation.errors import InvalidDag

__all__ = [
    "MAX_INTERVAL_SECONDS",
    "MAX_PERIOD",
    "SCHEMA",
    "Dag",
    "DagError",
    "DagNode",
    "chain_dag",
    "compute_key",
    "dag_crc32",
    "node",
    "node_id_for",
    "parse_dag",
    "validate_dag",
]

SCHEMA = "qmtl.dag/v1"
#: Documented bounds of the numeric node fields (docs/operations.md): an interval of at
#: most 366 days, a buffer of at most ten million items.  Both fit protobuf int64 easily.
MAX_INTERVAL_SECONDS = 366 * 24 * 3600
MAX_PERIOD = 10_000_000


class DagError(InvalidDag):
    """The DAG is malformed; the message says which node and what to fix."""


_sha256 = hashlib.sha256
#: ``map(isinstance, items, _STR)``: a type check per item without a Python frame.
_STR = itertools.repeat(str)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _framed(items: Any, *, ordered: bool) -> str:
    """``len:item`` for every item of a tag or input list (sorted for tags)."""
    if not items:
        return ""
    texts = map(str, items) if ordered else sorted(map(str, items))
    return "".join([f"{len(t)}:{t}" for t in texts])


def node_id_for(definition: Mapping[str, Any]) -> str:
    """Content hash of a node definition (``name`` and ``node_id`` are not part of it).

    Every field, and every tag and input inside the lists, is length-prefixed in a fixed
    order, so ``["a\x1eb"]`` and ``["a", "b"]`` hash differently; only ``config``
    (free-form) goes through canonical JSON.  This runs once per node per diff, so the
    framing is one f-string rather than a call per field, and the usual one-item lists
    and str fields take no conversion; the bytes hashed are pinned by
    tests/foundation/test_dag.py::test_node_ids_are_stable (ids are stored and shared).
    """
    get = definition.get
    tags = get("tags")
    if tags.__class__ is list and len(tags) == 1 and tags[0].__class__ is str:
        tags = f"{len(tags[0])}:{tags[0]}"  # inline: most nodes have one tag, one upstream
    else:
        tags = _framed(tags, ordered=False)
    inputs = get("inputs")
    if inputs.__class__ is list and len(inputs) == 1 and inputs[0].__class__ is str:
        inputs = f"{len(inputs[0])}:{inputs[0]}"
    else:
        inputs = _framed(inputs, ordered=True)
    node_type = get("node_type", "")
    if node_type.__class__ is not str:
        node_type = str(node_type)
    interval = str(get("interval"))
    period = str(get("period"))
    code_hash = get("code_hash") or ""
    if code_hash.__class__ is not str:
        code_hash = str(code_hash)
    config = get("config")
    config_text = _canonical(config).decode() if config else ""
    version = get("version") or "v1"
    if version.__class__ is not str:
        version = str(version)
    text = (
        f"{len(node_type)}:{node_type}{len(interval)}:{interval}{len(period)}:{period}"
        f"{len(tags)}:{tags}{len(inputs)}:{inputs}{len(code_hash)}:{code_hash}"
        f"{len(config_text)}:{config_text}{len(version)}:{version}"
    )
    return "N" + _sha256(text.encode()).hexdigest()[:40]


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


def _int_or_none(value: Any, what: str, where: str, limit: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
        raise DagError(f"{where}: {what} must be an integer from 0 to {limit}, got {shown}")
    return value


def _text(value: Any) -> str:
    """A str that encodes to UTF-8 (JSON escapes can smuggle in lone surrogates)."""
    text = str(value)
    if text.isascii():  # nearly always, and ASCII holds no surrogate
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DagError(
            f"text {text[:40]!r} contains an invalid Unicode escape (a lone surrogate); "
            "send valid UTF-8"
        ) from None
    return text


def parse_dag(text: str | bytes, *, max_bytes: int | None = None, verify_ids: bool = True) -> Dag:
    """Parse and validate DAG JSON; raise :class:`DagError` on any problem."""
    size = len(text)
    if max_bytes is not None and size > max_bytes:
        raise DagError(
            f"DAG payload is {size} bytes, over the {max_bytes}-byte limit; split the strategy "
            "or raise dagmanager.max_dag_bytes"
        )
    try:
        data = strictjson.loads(text, "DAG")
    except ValueError as exc:
        raise DagError(str(exc)) from None
    return validate_dag(data, verify_ids=verify_ids)


def validate_dag(data: Any, *, verify_ids: bool = True) -> Dag:
    """Validate an already-decoded DAG (a caller that decoded a larger body holds one)."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise DagError('DAG must be a JSON object with a "nodes" list')
    schema = data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise DagError(f"unsupported DAG schema {schema!r}; expected {SCHEMA!r}")
    if not data["nodes"]:
        raise DagError("DAG has no nodes")

    nodes: dict[str, DagNode] = {}
    for index, raw in enumerate(data["nodes"]):
        # The error text is built only on failure: this loop runs for every node of
        # every diff, on the Gateway and again on the DAG Manager.
        if not isinstance(raw, dict):
            raise DagError(f"nodes[{index}]: each node must be a JSON object")
        get = raw.get
        node_type = get("node_type")
        if not isinstance(node_type, str) or not node_type:
            raise DagError(f"nodes[{index}]: node_type is required")
        inputs = get("inputs") or []
        tags = get("tags") or []
        if not isinstance(inputs, list) or not all(map(isinstance, inputs, _STR)):
            raise DagError(f"nodes[{index}]: inputs must be a list of node ids")
        if not isinstance(tags, list):
            raise DagError(f"nodes[{index}]: tags must be a list")
        try:
            # Encodes every hashed field (tags and version included) as UTF-8, so those
            # need no separate lone-surrogate check below.
            expected = node_id_for(raw)
        except UnicodeEncodeError:
            raise DagError(
                f"nodes[{index}]: contains an invalid Unicode escape (a lone surrogate); "
                "send valid UTF-8"
            ) from None
        except ValueError as exc:  # e.g. an integer too long to convert to text
            raise DagError(f"nodes[{index}]: {exc}") from None
        node_id = get("node_id") or expected
        if verify_ids and node_id != expected:
            raise DagError(
                f"nodes[{index}]: node_id {node_id!r} does not match its definition (expected "
                f"{expected}); node ids are content hashes, recompute them with "
                "qmtl.foundation.dag.node_id_for"
            )
        if node_id in nodes:
            raise DagError(f"nodes[{index}]: duplicate node {node_id}")
        if not isinstance(node_id, str):
            raise DagError(f"nodes[{index}]: node_id must be a string")
        interval, period = get("interval"), get("period")
        if interval is not None and (
            interval.__class__ is not int or not 0 <= interval <= MAX_INTERVAL_SECONDS
        ):
            _int_or_none(interval, "interval", f"nodes[{index}]", MAX_INTERVAL_SECONDS)
        if period is not None and (period.__class__ is not int or not 0 <= period <= MAX_PERIOD):
            _int_or_none(period, "period", f"nodes[{index}]", MAX_PERIOD)
        str_tags = tuple(map(str, tags))
        nodes[node_id] = DagNode(  # positional: this runs for every node of every diff
            node_id, node_type, _text(get("name") or node_type), interval, period, str_tags,
            tuple(inputs), str(get("version") or "v1"),
            _text(get("asset") or (str_tags[0] if str_tags else "any")), raw,
        )  # fmt: skip

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

    version = data.get("version") or ""
    if not isinstance(version, str) or len(version) > 128:
        raise DagError("version must be a string of at most 128 characters")
    version = _text(version)
    if not version:
        version = "v" + hashlib.sha256("".join(order).encode()).hexdigest()[:12]
    return Dag(nodes=nodes, order=tuple(order), version=version, crc32=dag_crc32(order))


def node(node_type: str, inputs: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """One node definition with its content-hash ``node_id`` filled in."""
    definition = {"node_type": node_type, "inputs": inputs or [], **fields}
    definition["node_id"] = node_id_for(definition)
    return definition


def chain_dag(size: int, *, salt: str = "", interval: int = 60, period: int = 10) -> str:
    """A StreamInput followed by ``size - 1`` processing nodes, each fed by the previous one.

    Used by the demo's canary probe, the drills, tests and benchmarks; ``salt`` changes
    every node id, so "cold" runs get all-new nodes.
    """
    nodes = [
        node(
            "StreamInput", tags=["btc"], interval=interval, period=period, code_hash=salt,
            name="price",
        )
    ]  # fmt: skip
    for index in range(1, size):
        nodes.append(
            node(
                "ProcessingNode", [nodes[-1]["node_id"]], interval=interval, period=period,
                code_hash=f"{salt}:{index}", name=f"step{index}", asset="btc",
            )
        )  # fmt: skip
    return json.dumps({"schema": SCHEMA, "nodes": nodes})
