"""The domain exceptions of QMTL, drawn once; every adapter maps them with one table.

::

    QmtlError                       code, message, retryable
    ├── InvalidInput                the caller sent something wrong        HTTP 4xx  gRPC INVALID_ARGUMENT
    │   ├── BadRequest                  the HTTP request itself is malformed 400
    │   ├── InvalidJson                 body is not JSON                    400
    │   ├── InvalidRequest              fields missing, wrong type/shape     422
    │   ├── InvalidDag                  the DAG itself is malformed          422
    │   ├── GuardSourceRefused          an admin URL the guard may not contact 422
    │   └── PayloadTooLarge             over the configured size limit       413
    ├── AuthError                   credentials missing                    HTTP 401  gRPC UNAUTHENTICATED
    │   └── Forbidden                   credentials wrong, or none accepted    HTTP 403  gRPC PERMISSION_DENIED
    ├── NotFound                    the named thing does not exist         HTTP 404  gRPC NOT_FOUND
    │   ├── UnknownWorld
    │   ├── UnknownStrategy
    │   ├── UnknownSubmission
    │   ├── UnknownRun
    │   └── UnknownNode
    ├── Conflict                    valid input refused by current state   HTTP 409  gRPC FAILED_PRECONDITION
    │   ├── CrossContextViolation       a queue bound under another compute context
    │   ├── QueueNameCollision          two different nodes map to one queue name
    │   ├── ApplyInProgress             one apply run per world at a time
    │   ├── WorldFrozen                 an apply run froze the world (retryable)
    │   └── GuardBlocked                promotions blocked by cross-context hits / hold
    └── Unavailable                 a dependency is down; retry later      HTTP 503  gRPC UNAVAILABLE
        ├── Overloaded                  over the service's admission bounds    HTTP 429  gRPC RESOURCE_EXHAUSTED
        ├── BackendUnavailable          store, broker or breaker open
        ├── SubmissionNotPersisted      the submission log refused the write (nothing accepted)
        ├── SubmissionAbandoned         retries of a submission ran out
        ├── QueueCreationFailed         the queue backend refused new topics
        ├── GuardUnavailable            a promotion-guard source cannot be read
        └── ShuttingDown                the server stopped before the request finished

The split that matters most: :class:`InvalidInput` and :class:`Conflict` are the
*client's* problem and never count against a circuit breaker, never get retried and
never become a lost request; :class:`Unavailable` is an outage.  ``code`` is the
machine-readable error string of HTTP bodies and of the ``qmtl-error-code`` gRPC
trailer, so a client can rebuild the exact class with :func:`from_code`.  The status
each class gets is decided once per adapter: :mod:`qmtl.foundation.http_errors` for
HTTP, :mod:`qmtl.services.dagmanager.grpc_errors` for gRPC.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ApplyInProgress",
    "AuthError",
    "BackendUnavailable",
    "BadRequest",
    "Conflict",
    "CrossContextViolation",
    "Forbidden",
    "GuardBlocked",
    "GuardSourceRefused",
    "GuardUnavailable",
    "InvalidDag",
    "InvalidInput",
    "InvalidJson",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "QmtlError",
    "QueueCreationFailed",
    "QueueNameCollision",
    "ShuttingDown",
    "SubmissionAbandoned",
    "SubmissionNotPersisted",
    "Unavailable",
    "UnknownNode",
    "UnknownRun",
    "UnknownStrategy",
    "UnknownSubmission",
    "UnknownWorld",
    "WorldFrozen",
    "from_code",
]


class QmtlError(Exception):
    """Base of every domain error; ``message`` is for humans, ``code`` for machines."""

    code: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False
    _by_code: ClassVar[dict[str, type[QmtlError]]] = {}

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        #: Extra machine-readable fields for the error body (e.g. ``hits`` of the guard).
        self.details = details

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            QmtlError._by_code[cls.code] = cls

    def body(self) -> dict[str, Any]:
        """The one error shape of every QMTL HTTP API."""
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.retryable:
            out["retryable"] = True
        out.update(self.details)
        return out


def from_code(code: str, message: str, fallback: type[QmtlError] | None = None) -> QmtlError:
    """Rebuild the domain error a remote service reported by its ``code``."""
    cls = QmtlError._by_code.get(code) or fallback or QmtlError
    return cls(message)


# --------------------------------------------------------------------- client errors
class InvalidInput(QmtlError, ValueError):
    code = "invalid_input"


class BadRequest(InvalidInput):
    """The HTTP request cannot be read as one (a malformed ``Content-Length``, say)."""

    code = "bad_request"


class InvalidJson(InvalidInput):
    code = "invalid_json"


class InvalidRequest(InvalidInput):
    code = "invalid_request"


class InvalidDag(InvalidInput):
    code = "invalid_dag"


class GuardSourceRefused(InvalidInput):
    """The promotion guard will not read this admin URL (host not allowed, table full)."""

    code = "guard_source_refused"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class AuthError(QmtlError):
    code = "auth_required"


class Forbidden(AuthError):
    """Credentials were given and are wrong, or the call is refused whatever they are
    (a service exposed beyond loopback with no token configured)."""

    code = "auth_invalid"


class NotFound(QmtlError, LookupError):
    code = "not_found"


class UnknownWorld(NotFound):
    code = "unknown_world"


class UnknownStrategy(NotFound):
    code = "unknown_strategy"


class UnknownSubmission(NotFound):
    code = "unknown_submission"


class UnknownRun(NotFound):
    code = "unknown_run"


class UnknownNode(NotFound):
    code = "unknown_node"


class Conflict(QmtlError):
    code = "conflict"


class CrossContextViolation(Conflict):
    code = "cross_context_violation"


class QueueNameCollision(Conflict):
    code = "queue_name_collision"


class ApplyInProgress(Conflict):
    code = "apply_in_progress"


class WorldFrozen(Conflict):
    code = "world_frozen"
    retryable = True


class GuardBlocked(Conflict):
    """Promotions are blocked: unresolved cross-context hits, or the hold after a reset."""

    code = "promotion_blocked"


# --------------------------------------------------------------------- outages
class Unavailable(QmtlError):
    code = "unavailable"
    retryable = True


class Overloaded(Unavailable):
    """More work in flight than the service admits; ``retry_after`` seconds is a hint."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int = 1, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class BackendUnavailable(Unavailable):
    code = "backend_unavailable"


class SubmissionNotPersisted(Unavailable):
    """The submission log refused the write: nothing was accepted, the client retries."""

    code = "submission_not_persisted"


class SubmissionAbandoned(Unavailable):
    """Every retry of a submission failed; submitting it again starts afresh."""

    code = "abandoned"


class QueueCreationFailed(Unavailable):
    code = "queue_creation_failed"


class GuardUnavailable(Unavailable):
    code = "promotion_guard_unavailable"


class ShuttingDown(Unavailable):
    """The server stopped before this request finished; sent again, it reaches a server
    that is up (another replica, or this one restarted)."""

    code = "shutting_down"
