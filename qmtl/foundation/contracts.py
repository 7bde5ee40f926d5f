"""Typed contracts shared by the SDK, the Gateway and the DAG Manager.

A strategy submission travels SDK -> Gateway (HTTP JSON) -> DAG Manager (gRPC) and the
answer travels back; both directions use these two types, so the fields, their bounds
and the idempotency key are defined once:

* :class:`SubmissionRequest` -- what to diff, under which compute context;
* :class:`DiffResult` -- the queue map and buffering instructions of a diff.

Context fields are client input that ends up in metric labels, so their shape and
length are bounded here (``InvalidRequest`` names the field and the rule).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qmtl.foundation.errors import InvalidRequest

__all__ = [
    "DOMAINS",
    "FIELD_RULES",
    "MAX_METADATA_BYTES",
    "RUN_ID",
    "STRATEGY_ID",
    "SUBMISSION_ID",
    "WORLD_ID",
    "BufferInstruction",
    "ComputeContext",
    "DiffResult",
    "SubmissionRequest",
    "anchored",
    "check_domain",
    "check_field",
    "compute_key",
]

#: Execution domains a strategy can run in; empty means ``backtest``.
DOMAINS = ("", "backtest", "dryrun", "live", "shadow")

#: The identifier rules, defined here only: every door (HTTP models, the ControlBus
#: envelope, the SDK before it sends) matches against these.  Each bounds the length too.
WORLD_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
STRATEGY_ID = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"
#: Apply runs, ControlBus event ids and Gateway ids.
RUN_ID = r"[A-Za-z0-9_.:-]{1,128}"
SUBMISSION_ID = r"[A-Za-z0-9]{1,64}"


def anchored(pattern: str, *, optional: bool = False) -> str:
    """``pattern`` for a whole value (pydantic's ``Field(pattern=...)`` searches)."""
    return f"^(?:{pattern}){'?' if optional else ''}$"


#: Field -> (pattern, human description). Anchored; the pattern bounds the length too.
FIELD_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "strategy_id": (
        re.compile(STRATEGY_ID),
        "1-128 characters of [A-Za-z0-9_.:-], starting with a letter or digit",
    ),
    "world_id": (
        re.compile(f"(?:{WORLD_ID})?"),
        "empty or 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit",
    ),
    "run_id": (re.compile(RUN_ID), "1-128 characters of [A-Za-z0-9_.:-]"),
    "submission_id": (re.compile(SUBMISSION_ID), "1-64 letters and digits"),
    "as_of": (
        re.compile(r"[A-Za-z0-9_.:+-]{0,40}"),
        "empty or at most 40 characters of [A-Za-z0-9_.:+-] (e.g. 2024-01-31T00:00:00Z)",
    ),
    "partition": (
        re.compile(r"[A-Za-z0-9_.:-]{0,64}"),
        "empty or at most 64 characters of [A-Za-z0-9_.:-]",
    ),
    "admin_url": (
        re.compile(r"https?://[A-Za-z0-9.\-\[\]:]{1,253}(?::\d{1,5})?/?"),
        "an http(s)://host:port URL of the SDK admin endpoint",
    ),
}
#: Free-form submission metadata is kept, but bounded.
MAX_METADATA_BYTES = 16 * 1024


def check_field(name: str, value: object) -> str:
    """Validate one bounded text field; raise :class:`InvalidRequest` naming it."""
    pattern, rule = FIELD_RULES[name]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise InvalidRequest(f"{name}: must be {rule}; got {shown}")
    return value


def check_domain(value: object) -> str:
    if value not in DOMAINS:
        raise InvalidRequest(
            f"execution_domain: must be one of backtest, dryrun, live, shadow (or empty); got {value!r}"
        )
    return str(value)


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


@dataclass(frozen=True, slots=True)
class ComputeContext:
    """Where a computation runs: (world, execution domain, as_of, partition).

    Two contexts never share a cache entry or a queue binding (unless the operator
    opted out of isolation with ``dagmanager.namespace_queues: false``).
    """

    world_id: str = ""
    execution_domain: str = ""
    as_of: str = ""
    partition: str = ""

    def __post_init__(self) -> None:
        check_field("world_id", self.world_id)
        check_domain(self.execution_domain)
        check_field("as_of", self.as_of)
        check_field("partition", self.partition)

    @property
    def effective_domain(self) -> str:
        return self.execution_domain or "backtest"

    def key(self, node_id: str) -> str:
        return compute_key(
            node_id, self.world_id, self.execution_domain, self.as_of, self.partition
        )

    def key_function(self) -> Callable[[str], str]:
        """:meth:`key` for many nodes: the context's part of the hashed text is built once."""
        suffix = "\x1f".join(
            ("", self.world_id, self.execution_domain or "backtest", self.as_of, self.partition)
        )
        sha256 = hashlib.sha256

        def key(node_id: str) -> str:
            return sha256((node_id + suffix).encode()).hexdigest()[:32]

        return key

    def as_dict(self) -> dict[str, str]:
        return {
            "world_id": self.world_id,
            "execution_domain": self.effective_domain,
            "as_of": self.as_of,
            "partition": self.partition,
        }


@dataclass(frozen=True, slots=True)
class SubmissionRequest:
    """One strategy submission: a DAG (JSON text) and the context it runs under."""

    strategy_id: str
    dag_json: str
    world_id: str = ""
    execution_domain: str = ""
    as_of: str = ""
    partition: str = ""
    #: Admin URL of the submitting SDK process: the promotion guard reads its hits.
    admin_url: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_field("strategy_id", self.strategy_id)
        if not isinstance(self.dag_json, str) or not self.dag_json:
            raise InvalidRequest("dag: the DAG is required")
        if self.admin_url:
            check_field("admin_url", self.admin_url)
        ComputeContext(self.world_id, self.execution_domain, self.as_of, self.partition)

    @property
    def context(self) -> ComputeContext:
        return ComputeContext(self.world_id, self.execution_domain, self.as_of, self.partition)

    def submission_id(self) -> str:
        """Idempotency key: the same strategy, DAG and context is the same submission."""
        h = hashlib.sha256()
        for part in (
            self.strategy_id, self.world_id, self.execution_domain, self.as_of, self.partition,
        ):  # fmt: skip
            h.update(part.encode())
            h.update(b"\x1f")
        h.update(self.dag_json.encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy_id": self.strategy_id,
            "dag_json": self.dag_json,
            "world_id": self.world_id,
            "execution_domain": self.execution_domain,
            "as_of": self.as_of,
            "partition": self.partition,
            "admin_url": self.admin_url,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubmissionRequest:
        return cls(
            strategy_id=data["strategy_id"],
            dag_json=data["dag_json"],
            world_id=data.get("world_id", ""),
            execution_domain=data.get("execution_domain", ""),
            as_of=data.get("as_of", ""),
            partition=data.get("partition", ""),
            admin_url=data.get("admin_url", "") or "",
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True, slots=True)
class BufferInstruction:
    """A node must buffer ``period`` items of ``interval`` seconds before it is live."""

    node_id: str
    period: int
    interval: int


@dataclass(frozen=True, slots=True)
class DiffResult:
    """The answer of a diff: node id -> queue, and which new nodes must warm up."""

    queue_map: Mapping[str, str]
    buffering: tuple[BufferInstruction, ...]
    sentinel_id: str
    version: str
    crc32: int
    new_queues: int
    total_nodes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue_map": dict(self.queue_map),
            "buffering": [
                {"node_id": b.node_id, "period": b.period, "interval": b.interval}
                for b in self.buffering
            ],
            "sentinel_id": self.sentinel_id,
            "version": self.version,
            "crc32": self.crc32,
            "new_queues": self.new_queues,
            "total_nodes": self.total_nodes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DiffResult:
        return cls(
            queue_map=dict(data["queue_map"]),
            buffering=tuple(
                BufferInstruction(b["node_id"], int(b["period"]), int(b["interval"]))
                for b in data.get("buffering", ())
            ),
            sentinel_id=str(data.get("sentinel_id", "")),
            version=str(data.get("version", "")),
            crc32=int(data.get("crc32", 0)),
            new_queues=int(data.get("new_queues", 0)),
            total_nodes=int(data.get("total_nodes", len(data["queue_map"]))),
        )
