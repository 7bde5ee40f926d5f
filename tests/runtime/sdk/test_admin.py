"""The SDK admin server: the listener rule, the Bearer prefix and hostile requests."""

from __future__ import annotations

import socket

import httpx
import pytest

from qmtl.foundation import crosscontext
from qmtl.foundation.faults import FaultSet, Switch
from qmtl.runtime.sdk.admin import start_admin_server


def raw(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw HTTP bytes, return what came back before the server closed or answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks) and b"}" in data:
                    break
        except TimeoutError:
            pass
    return b"".join(chunks)


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    admin = start_admin_server(0, faults=FaultSet(Switch("node_fail", False, "x")))
    yield admin
    admin.stop()


def test_bearer_prefix_is_required(server) -> None:  # type: ignore[no-untyped-def]
    token_server = start_admin_server(0, token="s3cret")
    try:
        url = f"{token_server.url}/admin/cross-context/reset"
        assert httpx.post(url, timeout=5).status_code == 401
        assert httpx.post(url, headers={"Authorization": "s3cret"}, timeout=5).status_code == 401
        assert (
            httpx.post(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 403
        )
        ok = httpx.post(url, headers={"Authorization": "Bearer s3cret"}, timeout=5)
        assert ok.status_code == 200 and ok.json()["service"] == "sdk"
    finally:
        token_server.stop()


def test_all_interfaces_is_exposed_whatever_the_string(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """host "" binds every interface: admin calls are refused without a token."""
    exposed = start_admin_server(0, host="")
    try:
        response = httpx.post(
            f"http://127.0.0.1:{exposed.port}/admin/cross-context/reset", timeout=5
        )
        assert response.status_code == 403 and "sdk.admin_token" in response.json()["message"]
        assert httpx.get(f"http://127.0.0.1:{exposed.port}/metrics", timeout=5).status_code == 200
    finally:
        exposed.stop()


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ("Content-Length: abc\r\n", b"", b"400"),
        ("Content-Length: -1\r\n", b"", b"400"),
        ("Content-Length: 99999999\r\n", b"", b"413"),
        ("Content-Length: 2\r\n", b"[]", b"422"),
        ("Content-Length: 5\r\n", b"{oops", b"400"),
    ],
)
def test_hostile_requests_get_a_clear_4xx(server, headers: str, body: bytes, status: bytes) -> None:  # type: ignore[no-untyped-def]
    request = (
        f"POST /admin/cache/purge HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    ).encode() + body
    answer = raw(server.port, request)
    assert answer.startswith(b"HTTP/1.0 " + status) or answer.startswith(b"HTTP/1.1 " + status), (
        answer[:200]
    )
    assert b"Traceback" not in answer
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200


def test_cross_context_report_and_faults(server) -> None:  # type: ignore[no-untyped-def]
    crosscontext.reset()
    crosscontext.observe_hit("N1", "w", "live", "", "")
    report = httpx.get(f"{server.url}/admin/cross-context", timeout=5).json()
    assert report["hits"][0]["labels"]["node_id"] == "N1" and report["last_hit"]
    reset = httpx.post(f"{server.url}/admin/cross-context/reset", timeout=5).json()
    assert reset["reset_series"] == 1
    assert httpx.get(f"{server.url}/admin/cross-context", timeout=5).json()["last_reset"]
    assert httpx.post(f"{server.url}/admin/faults", json={"node_fail": True}, timeout=5).json() == {
        "node_fail": True
    }
    bad = httpx.post(f"{server.url}/admin/faults", json={"nope": 1}, timeout=5)
    assert bad.status_code == 422 and "unknown fault" in bad.json()["message"]
    assert bad.json()["error"] == "invalid_request"
    assert httpx.delete(f"{server.url}/admin/faults", timeout=5).json() == {"node_fail": False}
