"""The HTTP wire form of a submission, written and read in one place.

The SDK writes a :class:`SubmissionRequest` with :func:`encode_submission`; the Gateway
reads it back with :func:`decode_submission` (and answers a completed diff with
:meth:`Submitted.to_dict`, which the SDK reads with :meth:`Submitted.from_dict`).  On
the wire the DAG is a JSON object under ``dag``; in the contract it is the canonical
text of that object (``dag_json``: sorted keys), so both ends compute the same
submission id from the same DAG.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from qmtl.foundation import strictjson
from qmtl.foundation.contracts import MAX_METADATA_BYTES, DiffResult, SubmissionRequest
from qmtl.foundation.dag import SCHEMA, DagError, parse_dag, validate_dag
from qmtl.foundation.errors import InvalidJson, InvalidRequest

__all__ = [
    "WIRE_FIELDS",
    "Submitted",
    "canonical_dag_json",
    "decode_submission",
    "encode_submission",
]

WIRE_FIELDS = frozenset(
    {"strategy_id", "dag", "world_id", "execution_domain", "as_of", "partition", "metadata",
     "admin_url"}
)  # fmt: skip
_TEXT_FIELDS = ("strategy_id", "world_id", "execution_domain", "as_of", "partition", "admin_url")


def canonical_dag_json(dag: Mapping[str, Any]) -> str:
    """The DAG's text as the contract and the submission id know it."""
    try:
        return json.dumps(dag, sort_keys=True)
    except ValueError as exc:  # e.g. an integer too long to print
        raise InvalidRequest(f"dag: {exc}") from None


def encode_submission(request: SubmissionRequest) -> bytes:
    """The ``POST /strategies`` body for ``request``; its DAG text goes in as it is."""
    rest: dict[str, Any] = {name: getattr(request, name) for name in _TEXT_FIELDS}
    if request.metadata:
        rest["metadata"] = dict(request.metadata)
    tail = strictjson.dumps({k: v for k, v in rest.items() if v})
    return (
        b'{"dag":'
        + request.dag_json.encode()
        + (b"," + tail[1:].encode() if tail != "{}" else b"}")
    )


def decode_submission(raw: bytes, limit: int) -> tuple[SubmissionRequest, int]:
    """Body bytes -> a validated request and its node count; domain errors otherwise."""
    try:
        body = strictjson.loads(raw, "body")
    except ValueError as exc:
        raise InvalidJson(str(exc)) from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object with at least a 'dag'")
    unknown = set(body) - WIRE_FIELDS
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(WIRE_FIELDS))}"
        )
    if "dag" not in body:
        raise InvalidRequest("dag: the strategy DAG is required")
    dag = body["dag"]
    if isinstance(dag, dict):
        dag_json = canonical_dag_json(dag)
    elif isinstance(dag, str):
        dag_json = dag
    else:
        raise InvalidRequest(f"dag: must be a DAG object (schema {SCHEMA}) or its JSON text")
    if len(dag_json) > limit:
        raise DagError(
            f"DAG payload is {len(dag_json)} bytes, over the {limit}-byte limit; split the "
            "strategy or raise gateway.max_request_bytes"
        )
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata: must be a JSON object")
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise InvalidRequest(f"metadata: at most {MAX_METADATA_BYTES} bytes")
    for name in _TEXT_FIELDS:
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise InvalidRequest(f"{name}: must be a string")
    try:
        dag_json.encode("utf-8")
    except UnicodeEncodeError:
        raise DagError(
            "dag contains an invalid Unicode escape (a lone surrogate); send valid UTF-8"
        ) from None
    # A DAG object was decoded with the body: validate it as it is, not from its text.
    parsed = validate_dag(dag) if isinstance(dag, dict) else parse_dag(dag_json)
    request = SubmissionRequest(
        strategy_id=body.get("strategy_id") or f"s-{parsed.version}",
        dag_json=dag_json,
        world_id=body.get("world_id") or "",
        execution_domain=body.get("execution_domain") or "",
        as_of=body.get("as_of") or "",
        partition=body.get("partition") or "",
        admin_url=body.get("admin_url") or "",
        metadata=metadata,
    )
    return request, len(parsed.order)


class Submitted:
    """A completed submission as the Gateway answers it and the SDK returns it."""

    __slots__ = ("diff", "duplicate", "strategy_id", "submission_id")

    def __init__(
        self, submission_id: str, strategy_id: str, diff: DiffResult, *, duplicate: bool = False
    ) -> None:
        self.submission_id = submission_id
        self.strategy_id = strategy_id
        self.diff = diff
        self.duplicate = duplicate

    @property
    def queue_map(self) -> Mapping[str, str]:
        """Node id -> the queue the node reads from."""
        return self.diff.queue_map

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.diff.to_dict(),
            "strategy_id": self.strategy_id,
            "submission_id": self.submission_id,
            "status": "completed",
            "duplicate": self.duplicate,
        }

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> Submitted:
        return cls(
            str(body["submission_id"]), str(body.get("strategy_id", "")),
            DiffResult.from_dict(body), duplicate=bool(body.get("duplicate", False)),
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"Submitted(submission_id={self.submission_id!r}, strategy_id={self.strategy_id!r}, "
            f"nodes={len(self.queue_map)}, new_queues={self.diff.new_queues}, "
            f"duplicate={self.duplicate})"
        )
