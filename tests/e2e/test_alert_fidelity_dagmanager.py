"""Alert fidelity, part 2: every DAG Manager alert (diffs, queues, GC, lag, breakers,
the diff SLO) fires on its real fault and resolves, on a stack of its own so it runs
alongside part 1 (``test_alert_fidelity.py``).
"""

from __future__ import annotations

import pytest

from .alert_cases import DAGMANAGER_ALERTS, E2E, check_alert_fires_and_resolves

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.mark.parametrize("alertname", DAGMANAGER_ALERTS)
def test_alert_fires_on_fault_and_resolves(e2e: E2E, alertname: str) -> None:
    check_alert_fires_and_resolves(e2e, alertname)


def test_every_alert_a_fault_dragged_along_resolves(e2e: E2E) -> None:
    """Runs after every case: nothing the faults caused is left firing or pending."""
    e2e.wait_quiet(None)
