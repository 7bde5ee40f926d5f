"""``cross_context_cache_hit_total``: the SLO-0 counter shared by the SDK and the DAG Manager.

Defined once here; both emit it through :func:`observe_hit`, and both serve
``/admin/cross-context`` (hits, last hit, last reset) and its reset from this module.
The promotion guard of the WorldService reads those endpoints: it blocks while any
hit is unresolved and holds promotions for ``promotion_hold_seconds`` after the last
reset: the counter must stay at zero for that long (10 minutes by default).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from qmtl.foundation import metrics as m

__all__ = ["cross_context_cache_hit_total", "observe_hit", "report", "reset"]

cross_context_cache_hit_total = m.create("cross_context_cache_hit_total")
_budget = m.LabelBudget(cross_context_cache_hit_total, "cross_context_cache_hit_total")
_lock = threading.Lock()
_last_hit = 0.0
_last_reset = 0.0


def observe_hit(
    node_id: object, world_id: object, execution_domain: object, as_of: object, partition: object
) -> None:
    """Count one cross-context hit; missing values become ``__unset__``."""
    global _last_hit
    values = [m.normalize_label(v) for v in (node_id, world_id, execution_domain, as_of, partition)]
    _budget.labels(*values).inc()
    with _lock:
        _last_hit = time.time()


def reset() -> int:
    """Clear every hit series (runbook step 5); returns how many there were.

    Only a reset that cleared something starts the promotion hold (``last_reset``).
    """
    global _last_reset
    count = _budget.clear()
    if count:
        with _lock:
            _last_reset = time.time()
    return count


def report(service: str) -> dict[str, Any]:
    """The body of ``GET /admin/cross-context``."""
    with _lock:
        last_hit, last_reset = _last_hit, _last_reset
    return {
        "service": service,
        "hits": m.nonzero_series(cross_context_cache_hit_total),
        "last_hit": last_hit or None,
        "last_reset": last_reset or None,
    }
