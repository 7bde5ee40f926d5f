"""Gateway metrics, one module attribute per metric, named like the metric.

Each collector is built from its catalogue entry; the per-world ACK series are bounded
by a :class:`~qmtl.foundation.metrics.LabelBudget` (worlds come from the ControlBus).
"""

from __future__ import annotations

from qmtl.foundation import metrics as m
from qmtl.foundation.tracing import exemplar

__all__ = [
    "controlbus_apply_ack_latency_ms",
    "controlbus_apply_ack_latency_ms_hist",
    "controlbus_apply_ack_total",
    "dagclient_breaker_open_total",
    "dagclient_breaker_state",
    "forget_world",
    "gateway_e2e_latency_ms",
    "gateway_e2e_latency_p95",
    "gateway_submissions_in_flight",
    "gateway_submissions_total",
    "latency_window",
    "lost_requests_total",
    "observe_ack",
    "observe_latency",
]

gateway_e2e_latency_ms = m.create("gateway_e2e_latency_ms")
latency_window = m.QuantileWindow(300)
gateway_e2e_latency_p95 = m.bind_p95(m.create("gateway_e2e_latency_p95"), latency_window)
gateway_submissions_total = m.create("gateway_submissions_total")
lost_requests_total = m.create("lost_requests_total")
gateway_submissions_in_flight = m.create("gateway_submissions_in_flight")
dagclient_breaker_open_total = m.create("dagclient_breaker_open_total")
dagclient_breaker_state = m.create("dagclient_breaker_state")
controlbus_apply_ack_total = m.create("controlbus_apply_ack_total")
controlbus_apply_ack_latency_ms = m.create("controlbus_apply_ack_latency_ms")
controlbus_apply_ack_latency_ms_hist = m.create("controlbus_apply_ack_latency_ms_hist")
_worlds = m.ValueBudget("world_id")


def observe_latency(ms: float, code: int) -> None:
    """One answer to ``POST /strategies``: latency and status code.

    Called inside the request's span, whose trace id becomes the bucket's exemplar.
    """
    gateway_e2e_latency_ms.observe(ms, exemplar=exemplar())
    latency_window.observe(ms)
    gateway_submissions_total.labels(str(code)).inc()


def observe_ack(world_id: str, phase: str, latency_ms: float) -> None:
    world = _worlds.value(world_id)
    controlbus_apply_ack_total.labels(world, phase).inc()
    controlbus_apply_ack_latency_ms.labels(world, phase).set(latency_ms)
    controlbus_apply_ack_latency_ms_hist.labels(phase).observe(latency_ms)


def forget_world(world_id: str) -> None:
    """Drop the ACK series of a deleted world."""
    for phase in ("freeze", "unfreeze"):
        m.remove_series(controlbus_apply_ack_total, world_id, phase)
        m.remove_series(controlbus_apply_ack_latency_ms, world_id, phase)
    _worlds.forget(world_id)
