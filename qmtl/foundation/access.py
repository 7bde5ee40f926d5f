"""Who may change state: the rule every QMTL listener applies (HTTP, gRPC, SDK admin).

A listener bound only to loopback addresses trusts its callers: admin and
state-changing endpoints are open unless a token is configured.  A listener bound to
anything else -- a routable address, or every interface (``host: ""``, ``0.0.0.0``,
``::``) -- is *exposed*: every state-changing call needs ``Authorization: Bearer
<token>``, and with no token configured such calls are refused outright, so exposing
a service never exposes its admin surface by accident.

Exposure is decided from the address the socket binds (what ``getaddrinfo`` resolves
the configured host to), never from the configured string.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from typing import Any

from fastapi import HTTPException, Request

from qmtl.foundation.errors import AuthError, Forbidden
from qmtl.foundation.http_errors import http_status

__all__ = ["AdminGuard", "check_bearer", "is_exposed", "is_loopback", "missing_tokens"]


def is_loopback(host: str) -> bool:
    """True when ``host`` is a loopback IP address or ``localhost`` (no DNS lookup)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_exposed(host: str) -> bool:
    """Whether a listener configured with ``host`` binds any non-loopback address."""
    try:
        infos = socket.getaddrinfo(
            host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return True  # unknown: treat as exposed (the bind will fail anyway)
    addresses = {info[4][0] for info in infos}
    return not addresses or not all(is_loopback(str(a)) for a in addresses)


def missing_tokens(section: str, host: str, tokens: dict[str, str | None]) -> str | None:
    """Why a service bound to ``host`` must not start, or None.

    Exposed with a token unset, the endpoints it guards would refuse every call: the
    service would look healthy and do nothing.  Refusing to start says so at once.
    """
    unset = [f"{section}.{key}" for key, value in tokens.items() if not value]
    if not unset or not is_exposed(host):
        return None
    return (
        f"cannot start: {section}.host {host!r} listens beyond loopback and "
        f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set; set "
        f"{'it' if len(unset) == 1 else 'them'} in qmtl.yml (or QMTL_{section.upper()}__"
        f"{unset[0].split('.')[1].upper()}) or bind 127.0.0.1"
    )


def check_bearer(
    supplied: str | None,
    token: str | tuple[str | None, ...] | None,
    *,
    exposed: bool,
    what: str,
    token_key: str = "admin_token",
) -> None:
    """Apply the rule to one call; raise :class:`AuthError` when it is refused.

    ``token`` may be several tokens (any one of them is accepted); ``token_key`` names the
    config key of the token in messages.
    """
    tokens = [t for t in (token if isinstance(token, tuple) else (token,)) if t]
    if tokens:
        if not supplied or not supplied.startswith("Bearer "):
            raise AuthError(f"{what} needs 'Authorization: Bearer <token>'")
        given = supplied.removeprefix("Bearer ").encode()
        # Compare with every token, always: the time taken says nothing of which matched.
        matches = [hmac.compare_digest(given, t.encode()) for t in tokens]
        if not any(matches):
            raise Forbidden(f"{what}: the bearer token does not match")
        return
    if exposed:
        raise Forbidden(
            f"{what} is refused: this service listens beyond loopback and has no {token_key}; "
            f"set {token_key} in qmtl.yml (or bind 127.0.0.1)"
        )


class AdminGuard:
    """FastAPI dependency: ``Depends(AdminGuard(host, token))`` on state-changing routes
    (``token`` may be a tuple of tokens, any of which is accepted)."""

    def __init__(self, bind_host: str, token: str | tuple[str | None, ...] | None) -> None:
        self.bind_host = bind_host
        self.token = token
        self.exposed = is_exposed(bind_host)

    def __call__(self, request: Request) -> None:
        try:
            check_bearer(
                request.headers.get("authorization"),
                self.token,
                exposed=self.exposed,
                what=f"{request.method} {request.url.path}",
            )
        except AuthError as exc:
            forbidden = isinstance(exc, Forbidden)
            status = http_status(exc)
            headers: dict[str, Any] = {} if forbidden else {"WWW-Authenticate": "Bearer"}
            code = "admin_disabled" if "refused" in exc.message else (
                "admin_auth_invalid" if forbidden else "admin_auth_required"
            )  # fmt: skip
            raise HTTPException(
                status, {"error": code, "message": exc.message}, headers=headers
            ) from None
