"""WorldService metrics, one module attribute per metric, named like the metric."""

from __future__ import annotations

from qmtl.foundation import metrics as m

__all__ = [
    "world_allocation_snapshot_stale_ratio",
    "world_apply_failure_total",
    "world_apply_run_total",
]

world_apply_run_total = m.counter(
    "world_apply_run_total",
    "Apply runs by outcome (started, success, failure).",
    ["world_id", "run_id", "status"],
)
world_apply_failure_total = m.counter(
    "world_apply_failure_total",
    "Failed apply runs by the stage that failed.",
    ["world_id", "run_id", "stage"],
)
world_allocation_snapshot_stale_ratio = m.gauge(
    "world_allocation_snapshot_stale_ratio",
    "Share of the world's current allocation snapshots older than the freshness window.",
    ["world_id"],
)
