"""Graph stores for the shared DAG Manager suite: every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qmtl.foundation.config import DagManagerConfig
from qmtl.services.dagmanager.queues import InProcessQueues
from qmtl.services.dagmanager.service import DagManagerService, wire
from qmtl.services.dagmanager.store import GraphStore, open_graph_store


@pytest.fixture(params=["sqlite", "postgresql"])
def graph_store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'graph.db'}"
    server = request.getfixturevalue("postgres")
    return server.new_database()  # type: ignore[no-any-return]


@pytest.fixture
def store(graph_store_spec: str) -> Iterator[GraphStore]:
    s = open_graph_store(graph_store_spec)
    yield s
    s.close()


def make_service(
    store: GraphStore, *, drills: bool = False, queues: InProcessQueues | None = None,
    **overrides: object,
) -> tuple[DagManagerService, InProcessQueues]:  # fmt: skip
    """The service as ``build_service`` wires it, over ``store`` and in-process queues."""
    queues = queues or InProcessQueues()
    config = DagManagerConfig(**overrides)  # type: ignore[arg-type]
    return wire(config, store, queues, drills=drills), queues
