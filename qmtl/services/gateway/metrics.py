"""Gateway metrics, one module attribute per metric, named like the metric."""

from __future__ import annotations

from qmtl.foundation import metrics as m

__all__ = [
    "controlbus_apply_ack_latency_ms",
    "controlbus_apply_ack_latency_ms_hist",
    "controlbus_apply_ack_total",
    "dagclient_breaker_open_total",
    "dagclient_breaker_state",
    "gateway_e2e_latency_ms",
    "gateway_e2e_latency_p95",
    "latency_window",
    "lost_requests_total",
    "observe_latency",
]

gateway_e2e_latency_ms = m.histogram(
    "gateway_e2e_latency_ms", "Submission received -> acknowledged, every outcome (ms)."
)
latency_window = m.QuantileWindow(300)
gateway_e2e_latency_p95 = m.p95_gauge(
    "gateway_e2e_latency_p95",
    "p95 submission latency over the last 5 minutes (ms); NaN when idle.",
    latency_window,
)
lost_requests_total = m.counter(
    "lost_requests_total", "Submissions accepted but neither completed nor durably handed off."
)
dagclient_breaker_open_total = m.counter(
    "dagclient_breaker_open_total", "Times the dagclient circuit breaker opened."
)
dagclient_breaker_state = m.gauge(
    "dagclient_breaker_state", "State of the dagclient circuit breaker (1 open, 0 closed)."
)
controlbus_apply_ack_total = m.counter(
    "controlbus_apply_ack_total",
    "Freeze/unfreeze ACKs sent to the ControlBus.",
    ["world_id", "phase"],
)
controlbus_apply_ack_latency_ms = m.gauge(
    "controlbus_apply_ack_latency_ms",
    "Latency of the latest ACK: event time -> ACK (ms).",
    ["world_id", "phase"],
)
controlbus_apply_ack_latency_ms_hist = m.histogram(
    "controlbus_apply_ack_latency_ms_hist", "ACK latencies: event time -> ACK (ms).", ["phase"]
)


def observe_latency(ms: float) -> None:
    gateway_e2e_latency_ms.observe(ms)
    latency_window.observe(ms)
