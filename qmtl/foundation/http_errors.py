"""Domain error -> HTTP status, once for every HTTP door of QMTL.

The services (FastAPI), the SDK's admin endpoint (the standard library's server) and
the request-size middleware all answer through :func:`http_status`, so one class of
error has one status everywhere.  The most specific class in an error's MRO wins, as
in httpx's exception mapping.
"""

from __future__ import annotations

from qmtl.foundation.errors import (
    AuthError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidJson,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    QmtlError,
    Unavailable,
)

__all__ = ["HTTP_STATUS", "http_status"]

HTTP_STATUS: dict[type[QmtlError], int] = {
    BadRequest: 400,
    InvalidJson: 400,
    PayloadTooLarge: 413,
    InvalidInput: 422,
    Forbidden: 403,
    AuthError: 401,
    NotFound: 404,
    Conflict: 409,
    Overloaded: 429,
    Unavailable: 503,
    QmtlError: 500,
}


def http_status(exc: QmtlError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
