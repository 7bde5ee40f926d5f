"""Admission control in-process: the middleware against a scripted ASGI app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from qmtl.services.gateway.admission import Admission


class SlowApp:
    """Answers 200 once ``release`` is set; counts the requests it saw."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def request(length: int, path: str = "/strategies") -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path,
            "headers": [(b"content-length", str(length).encode())]}  # fmt: skip


async def call(app: Any, scope: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, json.loads(body or b"null")


def test_over_the_bounds_is_429_with_retry_after_before_the_body_is_read() -> None:
    """In-flight count, in-flight bytes and the retry backlog each refuse new work."""
    refused: list[int] = []
    backlog = {"n": 0}

    async def scenario() -> None:
        app = SlowApp()
        gate = Admission(
            app, max_in_flight=2, max_bytes=1000, max_backlog=5, backlog=lambda: backlog["n"],
            body_limit=10_000, on_refused=lambda *a: refused.append(a[2]),
        )  # fmt: skip
        first = asyncio.create_task(call(gate, request(600)))
        await asyncio.sleep(0)
        status, headers, body = await call(gate, request(600))  # 600 + 600 > 1000 bytes
        assert (status, body["error"], headers["retry-after"]) == (429, "overloaded", "1")
        second = asyncio.create_task(call(gate, request(100)))
        await asyncio.sleep(0)
        status, _headers, body = await call(gate, request(1))  # two in flight already
        assert status == 429 and "max_in_flight_submissions" in body["message"]
        app.release.set()
        assert (await first)[0] == (await second)[0] == 200
        assert gate.in_flight == 0 and gate.bytes == 0
        backlog["n"] = 5
        status, headers, body = await call(gate, request(1))
        assert status == 429 and headers["retry-after"] == "5" and body["retryable"] is True
        assert app.seen == 2, "refused requests never reached the application"
        other = {**request(1), "path": "/health", "method": "GET"}
        assert (await call(gate, other))[0] == 200, "other routes are not admission-controlled"

    asyncio.run(scenario())
    assert refused == [429, 429, 429]


def test_one_submission_is_always_let_in_whatever_its_size() -> None:
    """The byte bound never refuses the only submission: the size limit is the body's."""

    async def scenario() -> int:
        app = SlowApp()
        app.release.set()
        gate = Admission(app, max_in_flight=4, max_bytes=10, max_backlog=5, backlog=lambda: 0,
                         body_limit=10_000)  # fmt: skip
        return (await call(gate, request(5000)))[0]

    assert asyncio.run(scenario()) == 200
