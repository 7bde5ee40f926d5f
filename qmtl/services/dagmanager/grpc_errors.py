"""Domain error <-> gRPC status, once for the DAG Manager's server and its client.

The server aborts with :func:`grpc_status` and names the exact class in the
``qmtl-error-code`` trailer; the client rebuilds that class with
:func:`qmtl.foundation.errors.from_code`, or, from a server that sent no trailer (a proxy,
an older release), the class this table gives the status.  The most specific class in an
error's MRO wins.
"""

from __future__ import annotations

import grpc

from qmtl.foundation.errors import (
    AuthError,
    BackendUnavailable,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
    QmtlError,
    Unavailable,
    from_code,
)

__all__ = ["ERROR_TRAILER", "GRPC_STATUS", "domain_error", "grpc_status"]

ERROR_TRAILER = "qmtl-error-code"
GRPC_STATUS: dict[type[QmtlError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    AuthError: grpc.StatusCode.UNAUTHENTICATED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.FAILED_PRECONDITION,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    QmtlError: grpc.StatusCode.INTERNAL,
}
#: Status -> the class a trailer-less answer stands for; what is not here is an outage.
_BY_STATUS: dict[grpc.StatusCode, type[QmtlError]] = {
    status: cls
    for cls, status in reversed(GRPC_STATUS.items())
    if not issubclass(cls, Unavailable) and cls is not QmtlError
}


def grpc_status(exc: QmtlError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in GRPC_STATUS:
            return GRPC_STATUS[cls]
    return grpc.StatusCode.INTERNAL


def domain_error(exc: grpc.aio.AioRpcError) -> QmtlError:
    """The domain error a failed call stands for (an outage unless the server said otherwise)."""
    trailers = dict(exc.trailing_metadata() or ())
    code = trailers.get(ERROR_TRAILER)
    details = exc.details() or exc.code().name
    if isinstance(code, str):
        return from_code(code, details, BackendUnavailable)
    cls = _BY_STATUS.get(exc.code(), BackendUnavailable)
    if cls is BackendUnavailable:
        details = f"DAG Manager unavailable: {exc.code().name}: {details}"
    return cls(details)
