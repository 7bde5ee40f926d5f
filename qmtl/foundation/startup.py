"""The first steps of every service process, in one place so no service forgets one."""

from __future__ import annotations

import logging

from qmtl.foundation.access import missing_tokens
from qmtl.foundation.config import QmtlConfig
from qmtl.foundation.metrics import set_series_budget
from qmtl.foundation.tracing import setup_tracing

__all__ = ["prepare"]


def prepare(
    service: str, config: QmtlConfig, host: str, tokens: dict[str, str | None], hint: str
) -> bool:
    """Refuse to start a service exposed beyond loopback without its ``tokens`` (logging
    which are missing, with ``hint`` on who else uses them); otherwise install tracing
    and the per-metric series budget.  False means: exit with status 2."""
    refused = missing_tokens(service, host, tokens)
    if refused:
        logging.getLogger(f"qmtl.{service}").error("%s (%s)", refused, hint)
        return False
    setup_tracing(service, config)
    set_series_budget(config.telemetry.max_series_per_metric)
    return True
