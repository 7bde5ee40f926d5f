"""The local QMTL stack: services as real subprocesses, monitoring, the demo workload.

One way to run QMTL on one machine, used by ``qmtl up``, the integration tests, the
end-to-end suite and the benchmarks.  Backends are the embedded defaults unless a
Kafka bootstrap or a PostgreSQL DSN is given.

    stack = LocalStack(workdir).start()
    stack.url("gateway")  ->  "http://127.0.0.1:PORT"
    stack.stop()

Every process gets the same generated ``qmtl.yml`` (all on 127.0.0.1, free ports,
``drills.enabled`` so the fault switches of the drills exist).
"""

from __future__ import annotations

import copy
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qmtl.devstack.components import (
    Alertmanager,
    Prometheus,
    Service,
    start_alertmanager,
    start_prometheus,
    start_service,
)
from qmtl.devstack.processes import ManagedProcess, free_port, http_ok

__all__ = [
    "SERVICES",
    "LocalStack",
    "Monitoring",
    "scrape_targets",
    "start_demo",
    "start_monitoring",
]

SERVICES = ("dagmanager", "worldservice", "gateway")


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class LocalStack:
    workdir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    kafka: str | None = None
    postgres_dsn: str | None = None
    #: With ``kafka``: also run the ControlBus on Kafka (else it stays on the HTTP log).
    kafka_controlbus: bool = True
    #: Fault-injection switches (``/admin/faults``) in every service.
    drills: bool = True
    env: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in ("dm_http", "dm_grpc", "ws", "gw", "sdk")}

        def store(name: str) -> str:
            return f"sqlite:{self.workdir / (name + '.db')}"

        base: dict[str, Any] = {
            "drills": {"enabled": self.drills},
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
            if self.kafka_controlbus:
                base["controlbus"] = {
                    "backend": "kafka",
                    "brokers": self.kafka,
                    "topic": f"qmtl.controlbus.{uuid.uuid4().hex[:6]}",
                }
        if self.postgres_dsn:
            base["dagmanager"]["graph_store"] = self._database("graph")
            base["gateway"]["submission_log"] = self._database("gateway")
            base["worldservice"]["store"] = self._database("world")
        self.config = deep_merge(base, self.overrides)
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

    def pids(self) -> dict[str, int]:
        return {name: service.pid for name, service in self.services.items()}

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Monitoring:
    """Prometheus + Alertmanager watching a :class:`LocalStack`, rules rendered from the mixin."""

    prometheus: Prometheus
    alertmanager: Alertmanager
    rules_dir: Path

    def stop(self) -> None:
        self.prometheus.stop()
        self.alertmanager.stop()

    def pids(self) -> dict[str, int]:
        return {"prometheus": self.prometheus.pid, "alertmanager": self.alertmanager.pid}


def scrape_targets(stack: LocalStack) -> dict[str, str]:
    return {
        "qmtl-dagmanager": stack.url("dagmanager"),
        "qmtl-gateway": stack.url("gateway"),
        "qmtl-worldservice": stack.url("worldservice"),
        "qmtl-sdk": stack.url("sdk"),
    }


def start_monitoring(
    stack: LocalStack,
    *,
    rule_overrides: dict[str, Any] | None = None,
    scrape_interval: str = "5s",
    webhook_url: str | None = None,
) -> Monitoring:
    """Render rules (with ``rule_overrides`` of the Jsonnet config), start AM and Prometheus."""
    from qmtl.monitoring.render import dump_yaml, render

    rendered = render(rule_overrides or {})
    rules_dir = stack.workdir / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "alert_rules.yml").write_text(dump_yaml(rendered.alerts))
    (rules_dir / "recording_rules.yml").write_text(dump_yaml(rendered.rules))
    receiver: dict[str, Any] = {"name": "default"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    am_config = {
        "route": {"receiver": "default", "group_by": ["..."], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [receiver],
    }  # fmt: skip
    alertmanager = start_alertmanager(stack.workdir / "alertmanager", yaml.safe_dump(am_config))
    prom_config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(rules_dir / "alert_rules.yml"), str(rules_dir / "recording_rules.yml")],
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [alertmanager.url.removeprefix("http://")]}]}
            ]
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [url.removeprefix("http://")]}]}
            for job, url in scrape_targets(stack).items()
        ],
    }
    try:
        prometheus = start_prometheus(
            stack.workdir / "prometheus",
            yaml.safe_dump(prom_config),
            extra_args=["--rules.alert.resend-delay=1s"],
        )
    except Exception:
        alertmanager.stop()
        raise
    return Monitoring(prometheus, alertmanager, rules_dir)


def start_demo(stack: LocalStack, *, rate: float = 5.0, canary_seconds: float = 20.0,
               allocation_seconds: float = 60.0) -> Service:  # fmt: skip
    """The demo workload (`qmtl.examples.demo_runner`) against ``stack``; ready when /health answers."""
    process = ManagedProcess(
        "qmtl-sdk-demo",
        [sys.executable, "-m", "qmtl.examples.demo_runner", "--config", str(stack.config_path), "--rate", str(rate),
         "--canary-seconds", str(canary_seconds), "--allocation-seconds", str(allocation_seconds)],
        log_path=stack.workdir / "demo.log",
        env=stack.env,
        cwd=stack.workdir,
    )  # fmt: skip
    process.wait_ready(lambda: http_ok(f"{stack.url('sdk')}/health"), timeout=60)
    service = Service(process=process, url=stack.url("sdk"))
    stack.services["sdk"] = service
    return service


def write_pids(state: Path, pids: dict[str, int]) -> None:
    """Record the PIDs of a running stack, so a second ``qmtl up`` can refuse to clobber it."""
    (state / "pids.json").write_text(json.dumps(pids, indent=2, sort_keys=True) + "\n")
