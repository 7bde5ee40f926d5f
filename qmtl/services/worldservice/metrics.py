"""WorldService metrics, one module attribute per metric, named like the metric.

World ids come from clients, so the number of distinct worlds in labels is bounded
(:class:`~qmtl.foundation.metrics.ValueBudget`) and a deleted world's series are
dropped; per-run series keep only the last N runs of each world
(:class:`~qmtl.foundation.metrics.BoundedSeries`).
"""

from __future__ import annotations

from qmtl.foundation import metrics as m

__all__ = [
    "forget_world",
    "promotion_guard_unreachable_sources",
    "set_unreachable_sources",
    "world_allocation_snapshot_stale_ratio",
    "world_apply_failure_total",
    "world_apply_run_total",
    "world_label",
]

world_apply_run_total = m.create("world_apply_run_total")
world_apply_failure_total = m.create("world_apply_failure_total")
world_allocation_snapshot_stale_ratio = m.create("world_allocation_snapshot_stale_ratio")
promotion_guard_unreachable_sources = m.create("promotion_guard_unreachable_sources")
_worlds = m.ValueBudget("world_id")


def world_label(world_id: str) -> str:
    """The ``world_id`` label value to use: the id, or ``__other__`` past the budget."""
    return _worlds.value(world_id)


def forget_world(world_id: str) -> None:
    """Drop every series of a deleted world."""
    for metric in (world_apply_run_total, world_apply_failure_total):
        for labels in [s["labels"] for s in m.nonzero_series(metric)]:
            if labels["world_id"] == world_id:
                m.remove_series(metric, *labels.values())
    m.remove_series(world_allocation_snapshot_stale_ratio, world_id)
    _worlds.forget(world_id)


def set_unreachable_sources(*, static: int, registered: int) -> None:
    """What the promotion guard's last full read could not reach, by kind of source."""
    promotion_guard_unreachable_sources.labels("static").set(static)
    promotion_guard_unreachable_sources.labels("registered").set(registered)
