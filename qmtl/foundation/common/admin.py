"""Admin endpoint guard shared by every QMTL HTTP service.

On loopback, admin endpoints are open unless a token is configured.  Beyond loopback
they require ``Authorization: Bearer <admin_token>``; with no token configured they
are refused outright, so exposing a service never exposes its admin surface by accident.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import HTTPException, Request

__all__ = ["AdminGuard", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminGuard:
    """FastAPI dependency: ``Depends(AdminGuard(host, token))``."""

    def __init__(self, bind_host: str, token: str | None) -> None:
        self.bind_host = bind_host
        self.token = token

    def __call__(self, request: Request) -> None:
        if self.token:
            supplied = request.headers.get("authorization", "")
            if not supplied.startswith("Bearer "):
                raise HTTPException(
                    401,
                    {
                        "error": "admin_auth_required",
                        "message": "send Authorization: Bearer <admin_token>",
                    },
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not hmac.compare_digest(
                supplied.removeprefix("Bearer ").encode(), self.token.encode()
            ):
                raise HTTPException(
                    403, {"error": "admin_auth_invalid", "message": "admin token does not match"}
                )
            return
        if not is_loopback(self.bind_host):
            raise HTTPException(
                403,
                {
                    "error": "admin_disabled",
                    "message": f"service listens on {self.bind_host}; set admin_token in qmtl.yml to use admin endpoints",
                },
            )
