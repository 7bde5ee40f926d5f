"""Submit a strategy to a Gateway (with trace context and retries on retryable answers).

    result = submit(MyStrategy(), "http://127.0.0.1:8000", world_id="demo")
    result["queue_map"]  # node id -> queue

Retryable answers (503 ``retryable``, 409 ``world_frozen``, transport errors) are retried
with backoff; 202 ``queued`` is followed until the Gateway completes the submission.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from qmtl.foundation.common.tracing import get_tracer, inject_http_headers
from qmtl.runtime.sdk.runner import Runner, Strategy

__all__ = ["SubmissionError", "submit"]

_tracer = get_tracer("qmtl.sdk")


class SubmissionError(RuntimeError):
    """The Gateway refused the strategy (``code`` is its machine-readable error)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status


def submit(
    strategy: Strategy | type[Strategy],
    gateway_url: str,
    *,
    world_id: str = "",
    execution_domain: str = "",
    as_of: str = "",
    partition: str = "",
    strategy_id: str | None = None,
    attempts: int = 6,
    wait_seconds: float = 60.0,
) -> dict[str, Any]:
    instance = Runner.build(strategy)
    payload = {
        "strategy_id": strategy_id or instance.name,
        "dag": instance.dag(),
        "world_id": world_id,
        "execution_domain": execution_domain,
        "as_of": as_of,
        "partition": partition,
    }
    base = gateway_url.rstrip("/")
    with _tracer.start_as_current_span(
        "sdk.submit", attributes={"qmtl.strategy_id": payload["strategy_id"]}
    ):
        headers = dict(inject_http_headers({}))
        delay = 0.2
        for attempt in range(1, attempts + 1):
            try:
                response = httpx.post(
                    f"{base}/strategies", json=payload, headers=headers, timeout=30
                )
            except httpx.HTTPError as exc:
                if attempt == attempts:
                    raise SubmissionError("unreachable", f"{base}: {exc}", 0) from None
                time.sleep(delay)
                delay *= 2
                continue
            body = response.json()
            if response.status_code == 200:
                return dict(body)
            if response.status_code == 202:
                return _follow(base, payload["strategy_id"], wait_seconds)
            if body.get("retryable") and attempt < attempts:
                time.sleep(delay)
                delay *= 2
                continue
            raise SubmissionError(
                body.get("error", "error"), body.get("message", ""), response.status_code
            )
    raise SubmissionError("retries_exhausted", f"gave up after {attempts} attempts", 0)


def _follow(base: str, strategy_id: str, wait_seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/strategies/{strategy_id}/status", timeout=10).json()
        if status.get("status") == "completed":
            return dict(status["result"])
        if status.get("status") in ("rejected", "abandoned"):
            raise SubmissionError(status["status"], status.get("error") or "", 422)
        time.sleep(0.5)
    raise SubmissionError("timeout", f"submission still queued after {wait_seconds:g}s", 202)
