"""Fixtures that start real components; the only place tests get them from.

Each fixture starts its component on 127.0.0.1 and a free port through
:mod:`qmtl.testing` and stops exactly that PID afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qmtl import testing


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testing.Kafka]:
    broker = testing.start_kafka(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[testing.Postgres]:
    server = testing.start_postgres()
    yield server
    server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
