"""DAG JSON factories for tests and benchmarks (real content-hashed node ids)."""

from __future__ import annotations

import json
from typing import Any

from qmtl.foundation.dag import SCHEMA, node_id_for

__all__ = ["chain_dag", "node"]


def node(node_type: str, inputs: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """One node definition with its content-hash ``node_id`` filled in."""
    definition = {"node_type": node_type, "inputs": inputs or [], **fields}
    definition["node_id"] = node_id_for(definition)
    return definition


def chain_dag(size: int, *, salt: str = "", interval: int = 60, period: int = 10) -> str:
    """A StreamInput followed by ``size - 1`` processing nodes, each fed by the previous one.

    ``salt`` changes every node id, so "cold" benchmarks get all-new nodes.
    """
    nodes = [
        node(
            "StreamInput",
            tags=["btc"],
            interval=interval,
            period=period,
            code_hash=salt,
            name="price",
        )
    ]
    for index in range(1, size):
        nodes.append(
            node(
                "ProcessingNode",
                [nodes[-1]["node_id"]],
                interval=interval,
                period=period,
                code_hash=f"{salt}:{index}",
                name=f"step{index}",
                asset="btc",
            )
        )
    return json.dumps({"schema": SCHEMA, "nodes": nodes})
