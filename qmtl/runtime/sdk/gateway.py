"""Submit a strategy to a Gateway (with trace context and retries on retryable answers).

    submitted = submit(MyStrategy(), "http://127.0.0.1:8000", world_id="demo")
    submitted.queue_map  # node id -> queue; .diff holds the whole diff result

Retryable answers (503 ``retryable``, 429 ``overloaded`` after its ``Retry-After``, 409
``world_frozen``, transport errors) are retried with backoff, the same body each time
(the Gateway deduplicates it: one submission, however many replicas saw it); 202
``queued`` is followed, by submission id, until the Gateway completes it.  Pass ``admin_url`` (this process's SDK admin endpoint) so the promotion
guard of the WorldService can read this process's cross-context hits.
"""

from __future__ import annotations

import time

import httpx

from qmtl.foundation.contracts import SubmissionRequest, check_field
from qmtl.foundation.tracing import get_tracer, inject_http_headers
from qmtl.foundation.wire import Submitted, encode_submission
from qmtl.runtime.sdk.runner import Runner, Strategy
from qmtl.runtime.sdk.telemetry import ensure_tracing, sdk_config

__all__ = ["SubmissionError", "Submitted", "submit"]

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
    admin_url: str = "",
    token: str | None = None,
    attempts: int = 6,
    wait_seconds: float = 60.0,
) -> Submitted:
    """Submit ``strategy``; returns the completed submission (``queue_map``, ``diff``).

    Raises :class:`qmtl.foundation.errors.InvalidRequest` for bad ids or context values
    before anything is sent, :class:`SubmissionError` when the Gateway refuses.
    """
    ensure_tracing()
    instance = Runner.build(strategy)
    sid = check_field("strategy_id", strategy_id or instance.name)
    # The contract validates every field before anything is sent.
    request = SubmissionRequest(
        strategy_id=sid, dag_json=instance.dag_json(), world_id=world_id,
        execution_domain=execution_domain, as_of=as_of, partition=partition,
        admin_url=admin_url,
    )  # fmt: skip
    payload = encode_submission(request)
    token = token if token is not None else sdk_config().sdk.gateway_token
    base = gateway_url.rstrip("/")
    with _tracer.start_as_current_span("sdk.submit", attributes={"qmtl.strategy_id": sid}):
        headers = {**inject_http_headers({}), "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with httpx.Client(timeout=30) as client:
            return _submit(client, base, payload, headers, attempts, wait_seconds)


def _submit(
    client: httpx.Client, base: str, payload: bytes, headers: dict[str, str],
    attempts: int, wait_seconds: float,
) -> Submitted:  # fmt: skip
    """POST with retries on retryable answers, then follow a queued submission."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            response = client.post(f"{base}/strategies", content=payload, headers=headers)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            if attempt == attempts:
                raise SubmissionError("unreachable", f"{base}: {exc}", 0) from None
            time.sleep(delay)
            delay *= 2
            continue
        if response.status_code == 200:
            return Submitted.from_dict(body)
        if response.status_code == 202:
            return _follow(client, base, body["submission_id"], wait_seconds, headers)
        if body.get("retryable") and attempt < attempts:
            time.sleep(max(delay, _retry_after(response)))
            delay *= 2
            continue
        raise SubmissionError(
            body.get("error", "error"), body.get("message", ""), response.status_code
        )
    raise SubmissionError("retries_exhausted", f"gave up after {attempts} attempts", 0)


def _retry_after(response: httpx.Response) -> float:
    """The server's ``Retry-After`` in seconds (a 429 of admission control sends it)."""
    try:
        return min(60.0, max(0.0, float(response.headers.get("retry-after", 0))))
    except ValueError:
        return 0.0


def _follow(
    client: httpx.Client, base: str, submission_id: str, wait_seconds: float,
    headers: dict[str, str],
) -> Submitted:  # fmt: skip
    """Poll this submission (by id: never another world's) until it is final."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.1
    while time.monotonic() < deadline:
        try:
            status = client.get(f"{base}/submissions/{submission_id}", headers=headers, timeout=10)
            body = status.json()
        except (httpx.HTTPError, ValueError):
            body = {}
        if body.get("status") == "completed":
            return Submitted.from_dict(
                {**body["result"], "submission_id": submission_id,
                 "strategy_id": body.get("strategy_id", "")}
            )  # fmt: skip
        if body.get("status") in ("rejected", "abandoned"):
            raise SubmissionError(
                body.get("error_code") or body["status"], body.get("error") or "", 422
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    raise SubmissionError("timeout", f"submission still queued after {wait_seconds:g}s", 202)
