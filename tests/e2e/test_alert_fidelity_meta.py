"""Alert fidelity, part 3: the alerts about the monitoring itself -- the Watchdog,
a QMTL job gone from Prometheus, rules Prometheus cannot evaluate, a hung Alertmanager --
and the WorldService's own (a hang, malformed ControlBus events, a series budget
reached), on a stack of their own so they run alongside parts 1 and 2.
"""

from __future__ import annotations

import pytest

from .alert_cases import E2E, META_ALERTS, check_alert_fires_and_resolves

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.mark.parametrize("alertname", META_ALERTS)
def test_alert_fires_on_fault_and_resolves(e2e: E2E, alertname: str) -> None:
    check_alert_fires_and_resolves(e2e, alertname)


def test_every_alert_a_fault_dragged_along_resolves(e2e: E2E) -> None:
    """Runs after every case: nothing the faults caused is left firing or pending."""
    e2e.wait_quiet(None)
