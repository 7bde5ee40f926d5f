"""One error tree, one table per adapter: every domain error has a code of its own, an
HTTP status and a gRPC status, and a client rebuilds the exact class from the code."""

from __future__ import annotations

import grpc
import pytest

from qmtl.foundation import errors
from qmtl.foundation.errors import QmtlError, from_code
from qmtl.foundation.http_errors import http_status
from qmtl.services.dagmanager.grpc_errors import _BY_STATUS, grpc_status


def _all(cls: type[QmtlError]) -> list[type[QmtlError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _all(direct))]


DOMAIN = [cls for cls in _all(QmtlError) if cls.__module__ == errors.__name__]


def test_every_code_names_one_class() -> None:
    codes = [cls.code for cls in DOMAIN]
    assert len(codes) == len(set(codes)), sorted(codes)


@pytest.mark.parametrize("cls", DOMAIN, ids=lambda cls: cls.__name__)
def test_each_error_maps_on_every_adapter_and_comes_back_whole(cls: type[QmtlError]) -> None:
    exc = cls("m")
    rebuilt = from_code(cls.code, "m")
    assert type(rebuilt) is cls
    if cls is QmtlError:
        assert http_status(exc) == 500 and grpc_status(exc) == grpc.StatusCode.INTERNAL
        return
    assert 400 <= http_status(exc) < 600 and http_status(exc) != 500
    assert grpc_status(exc) not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    # Client errors are never 5xx, outages never 4xx (the breakers and retries rely on it).
    outage = isinstance(exc, errors.Unavailable) and not isinstance(exc, errors.Overloaded)
    assert (http_status(exc) >= 500) == outage


def test_forbidden_is_403_and_permission_denied_everywhere() -> None:
    exc = errors.Forbidden("wrong token")
    assert http_status(exc) == 403 and grpc_status(exc) == grpc.StatusCode.PERMISSION_DENIED
    assert http_status(errors.AuthError("no token")) == 401
    assert _BY_STATUS[grpc.StatusCode.PERMISSION_DENIED] is errors.Forbidden


def test_trailerless_statuses_map_back_to_the_general_class() -> None:
    assert _BY_STATUS[grpc.StatusCode.INVALID_ARGUMENT] is errors.InvalidInput
    assert _BY_STATUS[grpc.StatusCode.UNAUTHENTICATED] is errors.AuthError
    assert grpc.StatusCode.UNAVAILABLE not in _BY_STATUS  # an outage: BackendUnavailable
