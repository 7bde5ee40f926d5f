"""Helpers for testing QMTL and strategies built on it (never imported by product code).

* :mod:`~qmtl.testing.receivers` -- real protocol peers for backends that cannot run
  here: an OTLP/HTTP trace receiver, a QuestDB ILP/HTTP receiver, an Alertmanager webhook;
* :mod:`~qmtl.testing.metrics` -- read sample values, scrape and parse ``/metrics``;
* :mod:`~qmtl.testing.stalls` -- hold a transaction from another thread and measure the
  longest gap between an event loop's turns meanwhile.

Real components (Kafka, PostgreSQL, Prometheus, ...) and the local stack come from
:mod:`qmtl.devstack`, the same code ``qmtl up`` runs.
"""

from qmtl.testing.metrics import Scrape, Snapshot, scrape, value
from qmtl.testing.receivers import AlertEvent, AlertWebhook, IlpReceiver, OtlpTraceReceiver

__all__ = [
    "AlertEvent",
    "AlertWebhook",
    "IlpReceiver",
    "OtlpTraceReceiver",
    "Scrape",
    "Snapshot",
    "scrape",
    "value",
]
