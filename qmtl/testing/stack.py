"""A local QMTL stack: DAG Manager, WorldService and Gateway as real subprocesses.

Used by the integration tests, the end-to-end suite and ``qmtl up`` -- the one way we
start services.  Backends are the embedded defaults unless a Kafka bootstrap or a
PostgreSQL DSN is given.

    stack = LocalStack(workdir).start()
    stack.url("gateway")  ->  "http://127.0.0.1:PORT"
    stack.stop()
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qmtl.testing.components import Service, start_service
from qmtl.testing.processes import free_port

__all__ = ["SERVICES", "LocalStack"]

SERVICES = ("dagmanager", "worldservice", "gateway")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class LocalStack:
    workdir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    kafka: str | None = None
    postgres_dsn: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in ("dm_http", "dm_grpc", "ws", "gw", "sdk")}
        store = lambda name: f"sqlite:{self.workdir / (name + '.db')}"  # noqa: E731
        base: dict[str, Any] = {
            "dagmanager": {"http_port": ports["dm_http"], "grpc_port": ports["dm_grpc"],
                           "graph_store": store("dagmanager"), "breaker_probe_seconds": 0.5},
            "worldservice": {"port": ports["ws"], "store": store("worldservice")},
            "gateway": {"port": ports["gw"], "dagmanager_grpc": f"127.0.0.1:{ports['dm_grpc']}",
                        "submission_log": store("gateway"), "breaker_probe_seconds": 0.5,
                        "retry_interval_seconds": 0.5},
            "controlbus": {"backend": "http", "url": f"http://127.0.0.1:{ports['ws']}"},
            "sdk": {"admin_port": ports["sdk"]},
        }  # fmt: skip
        if self.kafka:
            base["dagmanager"].update(queue_backend="kafka", kafka_brokers=self.kafka)
            base["controlbus"] = {
                "backend": "kafka",
                "brokers": self.kafka,
                "topic": f"qmtl.controlbus.{uuid.uuid4().hex[:6]}",
            }
        if self.postgres_dsn:
            base["dagmanager"]["graph_store"] = self._database("graph")
            base["gateway"]["submission_log"] = self._database("gateway")
            base["worldservice"]["store"] = self._database("world")
        self.config = _deep_merge(base, self.overrides)
        self.config_path = self.workdir / "qmtl.yml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=True))

    def _database(self, name: str) -> str:
        import psycopg

        assert self.postgres_dsn
        db = f"qmtl_{name}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.postgres_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db}")
        return self.postgres_dsn.rsplit("/", 1)[0] + f"/{db}"

    def url(self, name: str) -> str:
        if name == "dagmanager":
            return f"http://127.0.0.1:{self.config['dagmanager']['http_port']}"
        if name == "sdk":
            return f"http://127.0.0.1:{self.config['sdk']['admin_port']}"
        return f"http://127.0.0.1:{self.config[name]['port']}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.config['dagmanager']['grpc_port']}"

    def start_service(self, name: str) -> Service:
        service = start_service(
            name,
            self.config_path,
            health_url=f"{self.url(name)}/health",
            workdir=self.workdir,
            env=self.env,
        )
        self.services[name] = service
        return service

    def start(self, names: tuple[str, ...] = SERVICES) -> LocalStack:
        try:
            for name in names:
                self.start_service(name)
        except Exception:
            self.stop()
            raise
        return self

    def stop_service(self, name: str) -> None:
        service = self.services.pop(name, None)
        if service is not None:
            service.stop()

    def stop(self) -> None:
        for name in reversed(list(self.services)):
            self.stop_service(name)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
