"""Named leases on SQLite and PostgreSQL: a heartbeat extends a held lease and never
takes back one its owner released (the apply-lease race a loaded CI machine found)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmtl import devstack
from qmtl.foundation.sqldb import Leases, SqlDatabase


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def leases(request: pytest.FixtureRequest, tmp_path: Path) -> Leases:
    if request.param == "sqlite":
        return Leases(SqlDatabase.open(f"sqlite:{tmp_path / 'leases.db'}"))
    server: devstack.Postgres = request.getfixturevalue("postgres")
    return Leases(SqlDatabase.open(server.dsn))


def test_renew_extends_only_the_holders_lease(leases: Leases) -> None:
    name = f"apply:{id(leases)}"
    assert leases.acquire(name, "a", 10, now=100)
    assert leases.renew(name, "a", 10, now=105)
    assert leases.holder(name, now=114) == "a"  # extended to 115
    assert not leases.renew(name, "b", 10, now=106)
    assert not leases.acquire(name, "b", 10, now=106)


def test_a_heartbeat_after_release_does_not_take_the_lease_back(leases: Leases) -> None:
    name = f"apply:{id(leases)}:released"
    assert leases.acquire(name, "run1", 10, now=100)
    leases.release(name, "run1")
    assert not leases.renew(name, "run1", 10, now=101)  # a late heartbeat
    assert leases.holder(name, now=101) is None
    assert leases.acquire(name, "run2", 10, now=101)


def test_a_lease_taken_over_after_expiry_is_not_renewed_by_the_old_owner(leases: Leases) -> None:
    name = f"apply:{id(leases)}:expired"
    assert leases.acquire(name, "old", 10, now=100)
    assert leases.acquire(name, "new", 10, now=111)  # expired at 110
    assert not leases.renew(name, "old", 10, now=112)
    assert leases.holder(name, now=112) == "new"
