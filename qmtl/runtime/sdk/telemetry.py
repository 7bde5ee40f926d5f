"""Tracing for strategy processes, from the same ``qmtl.yml`` the services read.

Define ``telemetry.otel_exporter_endpoint`` once and every process
-- Gateway, DAG Manager and SDK -- exports spans there.  ``Runner``, ``LiveRunner`` and
``submit`` call :func:`ensure_tracing` themselves, so a strategy needs no set-up code;
a process that already called ``setup_tracing`` keeps its own provider.
"""

from __future__ import annotations

import threading

from qmtl.foundation.config import QmtlConfig, resolve_config
from qmtl.foundation.tracing import setup_tracing

__all__ = ["ensure_tracing", "sdk_config"]

_lock = threading.Lock()
_config: QmtlConfig | None = None


def sdk_config() -> QmtlConfig:
    """The configuration of this strategy process (``$QMTL_CONFIG`` or ``./qmtl.yml``)."""
    global _config
    with _lock:
        if _config is None:
            _config = resolve_config()
        return _config


def ensure_tracing() -> None:
    """Install the tracer provider once, as configured; a ConfigError names the bad key."""
    setup_tracing("sdk", sdk_config())
