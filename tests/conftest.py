"""Fixtures that start real components; the only place tests get them from.

Each fixture starts its component on 127.0.0.1 and a free port through
:mod:`qmtl.devstack` and stops exactly that PID afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmtl import devstack
from qmtl.devstack.processes import port_range


def _ports_of_this_worker() -> None:
    """Give each xdist worker (and the processes it starts) its own block of ports.

    Ports are checked free before they are handed out, but a service binds a moment
    later; two workers drawing the same port in that moment would collide.  Disjoint
    blocks (``QMTL_PORT_RANGE``, inherited by every child) make that impossible.
    """
    if os.environ.get("QMTL_PORT_RANGE") and not os.environ.get("QMTL_PORT_RANGE_BY_TESTS"):
        return  # the user chose
    # Workers inherit the controller's environment: the marker says the range is ours
    # to replace, so each worker takes its own block instead of sharing the controller's.
    os.environ["QMTL_PORT_RANGE_BY_TESTS"] = "1"
    os.environ.pop("QMTL_PORT_RANGE", None)  # split the whole default range, not a block
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...; "" without xdist
    index = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    blocks = 12
    low, high = port_range()
    size = (high - low + 1) // blocks
    index %= blocks
    os.environ["QMTL_PORT_RANGE"] = f"{low + index * size}-{low + (index + 1) * size - 1}"


_ports_of_this_worker()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Kafka]:
    broker = devstack.start_kafka(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[devstack.Postgres]:
    server = devstack.start_postgres()
    yield server
    server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def write_config(workdir: Path, sections: dict) -> Path:
    """Write a qmtl.yml for a service under test."""
    import yaml

    path = workdir / "qmtl.yml"
    path.write_text(yaml.safe_dump(sections))
    return path


@pytest.fixture
def start_dagmanager(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: run `qmtl service dagmanager server` with config overrides; stopped after the test."""
    started: list[devstack.Service] = []

    def start(*, drills: bool = False, **overrides: object) -> tuple[devstack.Service, str]:
        workdir = tmp_path / f"dagmanager{len(started)}"
        workdir.mkdir()
        http_port, grpc_port = devstack.free_port(), devstack.free_port()
        section = {
            "http_port": http_port,
            "grpc_port": grpc_port,
            "graph_store": f"sqlite:{workdir / 'graph.db'}",
            "breaker_probe_seconds": 0.5,
            **overrides,
        }
        config = write_config(workdir, {"dagmanager": section, "drills": {"enabled": drills}})
        service = devstack.start_service(
            "dagmanager", config, health_url=f"http://127.0.0.1:{http_port}/health", workdir=workdir
        )
        started.append(service)
        return service, f"127.0.0.1:{grpc_port}"

    yield start
    for service in started:
        service.stop()


def _slowness(item: pytest.Item) -> int:
    """0 for the end-to-end stacks, 1 for other real-component tests, 2 for the rest."""
    if item.get_closest_marker("e2e"):
        return 0
    return 1 if item.get_closest_marker("integration") else 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest work first: with ``--dist loadfile`` and ``--no-loadscope-reorder`` (set in
    pyproject), xdist hands out files in the order of their first test, so the
    minutes-long alert drills start at once on their own workers and short files fill
    the gaps after.  Files move as a whole; the order inside a file is untouched."""
    rank: dict[str, int] = {}
    for item in items:
        rank[item.nodeid.split("::")[0]] = min(
            rank.get(item.nodeid.split("::")[0], 2), _slowness(item)
        )
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])  # stable
