"""A stopping HTTP server answers what holds requests open and never waits past its grace."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi import FastAPI

from qmtl import devstack
from qmtl.foundation import httpserver
from qmtl.foundation.config import HttpConfig

#: Waits that only end a test that would otherwise hang; never reached when it passes.
HANG_GUARD = 60.0


async def _serve_holding(grace: float, released: asyncio.Event | None) -> dict[str, Any]:
    """Serve one request that waits for ``released`` (or for ever), stop the server while
    it waits, and report how the request and the handler ended."""
    app, entered, seen = FastAPI(), asyncio.Event(), {"handler": "running"}

    @app.get("/hold")
    async def hold() -> dict[str, str]:
        entered.set()
        try:
            await (released.wait() if released is not None else asyncio.Event().wait())
        except asyncio.CancelledError:
            seen["handler"] = "cancelled"
            raise
        seen["handler"] = "answered"
        return {"held": "released"}

    port = devstack.free_port()
    hook = released.set if released is not None else None
    server = httpserver.server(
        app, "127.0.0.1", port, HttpConfig(shutdown_grace_seconds=grace), on_shutdown=hook
    )
    serving = asyncio.create_task(server.serve())
    async with httpx.AsyncClient(timeout=HANG_GUARD) as client:
        await asyncio.wait_for(_until_up(server), HANG_GUARD)
        request = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/hold"))
        await asyncio.wait_for(entered.wait(), HANG_GUARD)
        server.should_exit = True
        await asyncio.wait_for(serving, HANG_GUARD)
        try:
            response = await asyncio.wait_for(request, HANG_GUARD)
            seen["client"] = f"{response.status_code} {response.text}"
        except httpx.HTTPError as exc:
            seen["client"] = type(exc).__name__
    return seen


async def _until_up(server: Any) -> None:
    while not server.started:
        await asyncio.sleep(0.01)


def test_the_shutdown_hook_answers_a_held_request_before_the_server_waits() -> None:
    """The grace is long (an hour): only the hook can end the request in time."""
    seen = asyncio.run(_serve_holding(grace=3600.0, released=asyncio.Event()))
    assert seen == {"handler": "answered", "client": '200 {"held":"released"}'}


def test_a_request_still_running_after_the_grace_is_cancelled() -> None:
    """Without a bound the server would wait for this handler for ever; the client is
    told, in the error shape of every QMTL API, that it may send the request again."""
    seen = asyncio.run(_serve_holding(grace=0.2, released=None))
    assert seen["handler"] == "cancelled"
    status, body = seen["client"].split(" ", 1)
    assert status == "503", seen
    assert json.loads(body) == {
        "error": "shutting_down",
        "message": "the server stopped before this request finished; send it again",
        "retryable": True,
    }
