"""Alert fidelity, part 1: a healthy stack fires nothing, every dashboard panel has
data, and every Gateway, SDK and WorldService alert fires on its real fault and resolves.
The DAG Manager's alerts run on a stack of their own in
``test_alert_fidelity_dagmanager.py``; the drills are in ``alert_cases.py``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from qmtl import devstack
from qmtl.monitoring.promql import grafana_expr
from qmtl.monitoring.render import REPO_ROOT, render

from .alert_cases import (
    CASES,
    DAGMANAGER_ALERTS,
    E2E,
    EDGE_ALERTS,
    FAST,
    META_ALERTS,
    check_alert_fires_and_resolves,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_every_alert_has_an_e2e_case() -> None:
    shipped = yaml.safe_load((REPO_ROOT / "alert_rules.yml").read_text())
    names = {r["alert"] for g in shipped["groups"] for r in g["rules"]}
    assert set(CASES) == names
    assert sorted(DAGMANAGER_ALERTS + EDGE_ALERTS + META_ALERTS) == sorted(CASES), (
        "each case runs exactly once"
    )


def test_healthy_stack_fires_nothing(e2e: E2E) -> None:
    """With the demo running and windows filled, no alert is pending or firing but the
    Watchdog, which always fires."""
    devstack.wait_for(
        lambda: e2e.query("sum(rate(diff_requests_total[20s])) > 0"),
        timeout=90,
        what="diff traffic visible",
    )
    # Start-up is not steady state: the demo's first, cold diffs create its topics on the
    # test broker, and on a busy machine they may be slow enough for DiffDurationHigh
    # until they leave the p95 window.  Observe once that has settled.
    e2e.wait_quiet(None, timeout=120)
    started = time.time()
    time.sleep(25)  # observation window over several rule evaluations, not a readiness wait
    active = [(a["labels"]["alertname"], a["state"]) for a in e2e.active_alerts()]
    assert active == [("Watchdog", "firing")], active
    assert [
        ev for ev in e2e.webhook.events if ev.received_at >= started and ev.alertname != "Watchdog"
    ] == []


#: Series that exist only while something is wrong, so a healthy stack has none.
DOCUMENTED_EMPTY = {
    r"^cross_context_cache_hit_total\{[^}]*\}$": "SLO 0: no hit on a healthy stack (its stat panel shows 0 via `or vector(0)`)",
    "world_apply_failure_total": "no apply run has failed",
    "queue_lag_": "no consumer group has committed offsets (the demo runs offline on generated prices)",
    "backfill_failure_total": "no backfill job has failed for good",
    "event_recorder_errors_total": "the recorder has persisted every row",
    "controlbus_invalid_events_total": "no malformed ControlBus event was seen",
    "qmtl_dropped_label_values_total": "no metric reached its series budget",
}


def test_every_dashboard_panel_has_live_data(e2e: E2E) -> None:
    """On the healthy stack, each panel query returns data (or is documented as empty)."""
    empty = []
    # Rendered from the same source and FAST config as the rules (recording-rule names
    # carry the window, e.g. job_instance:diff_requests:rate20s).
    for name, dashboard in sorted(render(FAST).dashboards.items()):
        path = Path(name)
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = grafana_expr(target["expr"], FAST["rateWindow"])  # variables at "All"
                documented = any(re.search(pattern, expr) for pattern in DOCUMENTED_EMPTY)
                if not documented and not e2e.query(expr):
                    empty.append(f"{path.name}: {panel['title']}: {target['expr']}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)


@pytest.mark.parametrize("alertname", EDGE_ALERTS)
def test_alert_fires_on_fault_and_resolves(e2e: E2E, alertname: str) -> None:
    check_alert_fires_and_resolves(e2e, alertname)


def test_every_alert_a_fault_dragged_along_resolves(e2e: E2E) -> None:
    """Runs after every case: nothing the faults caused is left firing or pending."""
    e2e.wait_quiet(None)
