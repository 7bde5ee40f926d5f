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
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml

from qmtl.devstack.components import (
    Alertmanager,
    Backend,
    HAProxy,
    Prometheus,
    Service,
    VictoriaMetrics,
    new_database,
    start_alertmanager,
    start_haproxy,
    start_prometheus,
    start_service,
    start_victoria_metrics,
)
from qmtl.devstack.processes import ManagedProcess, free_port, http_ok, stop_all, wait_for

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
    """Services on this machine; with ``replicas`` > 1, N of each behind HAProxy.

    Replicas need the production backends (``kafka`` and ``postgres_dsn``): the submission
    log, graph store, world store and ControlBus are shared.  The generated ``qmtl.yml``
    then points clients (SDK, ``qmtl ops``, the Gateways' DAG Manager client) at the
    balancer; each replica gets its own ports and instance id through ``QMTL_*`` variables.
    Names: ``gateway`` is the service (the balancer's URL with replicas), ``gateway-2``
    one replica.
    """

    workdir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    kafka: str | None = None
    postgres_dsn: str | None = None
    #: With ``kafka``: also run the ControlBus on Kafka (else it stays on the HTTP log).
    kafka_controlbus: bool = True
    #: Fault-injection switches (``/admin/faults``) in every service.
    drills: bool = True
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    balancer: HAProxy | None = None

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if self.replicas > 1 and not (self.kafka and self.postgres_dsn):
            raise ValueError("replicas share their stores: they need kafka and postgres")
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in ("dm_http", "dm_grpc", "ws", "gw", "sdk")}
        #: Per replica: service -> list of its own ports.
        self.replica_ports: dict[str, list[dict[str, int]]] = {
            "dagmanager": [
                {"http": free_port(), "grpc": free_port()} for _ in range(self.replicas)
            ],
            "worldservice": [{"http": free_port()} for _ in range(self.replicas)],
            "gateway": [{"http": free_port()} for _ in range(self.replicas)],
        }

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
        if self.replicas > 1:
            # The guard must read every DAG Manager replica's own counter, not one per poll.
            base["worldservice"]["cross_context_sources"] = [
                f"http://127.0.0.1:{p['http']}/admin/cross-context"
                for p in self.replica_ports["dagmanager"]
            ]
            base["dagmanager"]["leader_lease_seconds"] = 3
        self.config = deep_merge(base, self.overrides)
        self.config_path = self.workdir / "qmtl.yml"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=True))

    def _database(self, name: str) -> str:
        assert self.postgres_dsn
        return new_database(self.postgres_dsn, f"qmtl_{name}")

    # -- names and addresses ------------------------------------------------------------
    def replica_names(self, service: str) -> list[str]:
        if self.replicas == 1:
            return [service]
        return [f"{service}-{i + 1}" for i in range(self.replicas)]

    def _replica(self, name: str) -> tuple[str, int]:
        service, _, index = name.partition("-")
        return service, int(index) - 1

    def url(self, name: str) -> str:
        """Base URL of a service (the balancer with replicas), a replica, or the SDK demo."""
        if name == "sdk":
            return f"http://127.0.0.1:{self.config['sdk']['admin_port']}"
        if "-" in name:
            service, index = self._replica(name)
            return f"http://127.0.0.1:{self.replica_ports[service][index]['http']}"
        if name == "dagmanager":
            return f"http://127.0.0.1:{self.config['dagmanager']['http_port']}"
        return f"http://127.0.0.1:{self.config[name]['port']}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.config['dagmanager']['grpc_port']}"

    def grpc_target_of(self, name: str) -> str:
        service, index = self._replica(name)
        return f"127.0.0.1:{self.replica_ports[service][index]['grpc']}"

    def replica_env(self, name: str) -> dict[str, str]:
        """The QMTL_* overrides that give one replica its own ports and identity."""
        if self.replicas == 1:
            return {}
        service, index = self._replica(name)
        own = self.replica_ports[service][index]
        if service == "dagmanager":
            return {"QMTL_DAGMANAGER__HTTP_PORT": str(own["http"]),
                    "QMTL_DAGMANAGER__GRPC_PORT": str(own["grpc"])}  # fmt: skip
        if service == "worldservice":
            return {"QMTL_WORLDSERVICE__PORT": str(own["http"])}
        return {"QMTL_GATEWAY__PORT": str(own["http"]), "QMTL_GATEWAY__INSTANCE_ID": name}

    # -- processes ----------------------------------------------------------------------
    def start_service(self, name: str) -> Service:
        """Start a service (or, with replicas, one replica: ``gateway-2``)."""
        if self.replicas > 1 and "-" not in name:
            raise ValueError(f"with replicas, start {name}-1 .. {name}-{self.replicas}")
        service_name = self._replica(name)[0] if "-" in name else name
        service = start_service(
            service_name,
            self.config_path,
            health_url=f"{self.url(name)}/health",
            workdir=self.workdir,
            env={**self.env, **self.replica_env(name)},
            log_name=name,
        )
        self.services[name] = service
        return service

    def start_balancer(self) -> HAProxy:
        """HAProxy in front of every replica, on the ports the shared qmtl.yml names."""
        dm = self.replica_ports["dagmanager"]
        backends = [
            Backend("gateway", tuple((f"gateway-{i + 1}", f"127.0.0.1:{p['http']}", None)
                                     for i, p in enumerate(self.replica_ports["gateway"]))),
            Backend("worldservice", tuple((f"worldservice-{i + 1}", f"127.0.0.1:{p['http']}", None)
                                          for i, p in enumerate(self.replica_ports["worldservice"]))),
            Backend("dagmanager_http", tuple((f"dagmanager-{i + 1}", f"127.0.0.1:{p['http']}", None)
                                             for i, p in enumerate(dm))),
            Backend("dagmanager_grpc", tuple((f"dagmanager-{i + 1}", f"127.0.0.1:{p['grpc']}", p["http"])
                                             for i, p in enumerate(dm)), grpc=True),
        ]  # fmt: skip
        ports = {
            "gateway": self.config["gateway"]["port"],
            "worldservice": self.config["worldservice"]["port"],
            "dagmanager_http": self.config["dagmanager"]["http_port"],
            "dagmanager_grpc": self.config["dagmanager"]["grpc_port"],
        }
        self.balancer = start_haproxy(self.workdir / "haproxy", backends, ports)
        return self.balancer

    def start(self, names: tuple[str, ...] = SERVICES) -> LocalStack:
        try:
            for name in names:
                for replica in self.replica_names(name):
                    self.start_service(replica)
            if self.replicas > 1:
                self.start_balancer()
                for name in names:  # through the balancer, once its checks see the replicas
                    url = f"{self.url(name)}/health"
                    wait_for(partial(http_ok, url), timeout=30, what=f"{name} through HAProxy")
                if "dagmanager" in names:  # its gRPC backend is checked on its own
                    wait_for(partial(grpc_health_ok, self.grpc_target), timeout=30,
                             what="DAG Manager gRPC through HAProxy")  # fmt: skip
            if "gateway" in names and "dagmanager" in names:
                # Each Gateway reached the DAG Manager before it takes submissions (replicas
                # start before the balancer they dial, so their first attempts fail).
                for replica in self.replica_names("gateway"):
                    wait_for(partial(gateway_sees_dagmanager, self.url(replica)),
                             timeout=30, what=f"{replica} reaching the DAG Manager")  # fmt: skip
        except Exception:
            self.stop()
            raise
        return self

    def stop_service(self, name: str) -> None:
        service = self.services.pop(name, None)
        if service is not None:
            service.stop()

    def stop(self) -> None:
        """Stop every service, newest first, and the balancer; all of them even when one
        will not go (:class:`ProcessError` names it afterwards)."""
        handles: list[Any] = [self.services.pop(name) for name in reversed(list(self.services))]
        handles.append(self.balancer)
        self.balancer = None
        stop_all(handles)

    def pids(self) -> dict[str, int]:
        pids = {name: service.pid for name, service in self.services.items()}
        if self.balancer is not None:
            pids["haproxy"] = self.balancer.pid
        return pids

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def gateway_sees_dagmanager(gateway_url: str) -> bool:
    """Whether the Gateway at ``gateway_url`` reports its DAG Manager reachable."""
    try:
        reply = httpx.get(f"{gateway_url}/status", timeout=3.0)
        return reply.status_code == 200 and bool(reply.json()["dagmanager"]["reachable"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False


def grpc_health_ok(target: str) -> bool:
    """Whether a DAG Manager answers ``Health`` at ``target`` (a balancer accepts the
    connection before any backend is up, so connecting proves nothing)."""
    import grpc

    from qmtl.services.dagmanager.proto import dagmanager_pb2 as pb
    from qmtl.services.dagmanager.proto import dagmanager_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            pb_grpc.DagManagerStub(channel).Health(pb.HealthRequest(), timeout=2.0)
        except grpc.RpcError:
            return False
    return True


@dataclass
class Monitoring:
    """Prometheus + Alertmanager watching a :class:`LocalStack`, rules rendered from the mixin.

    With ``ha``: two Prometheus replicas (``replica: a|b``) and two clustered
    Alertmanager peers; :attr:`prometheus` and :attr:`alertmanager` are the first of each.
    """

    replicas: list[Prometheus]
    alertmanagers: list[Alertmanager]
    rules_dir: Path
    #: VictoriaMetrics receiving both replicas' remote writes (HA only).
    long_term: VictoriaMetrics | None = None

    @property
    def prometheus(self) -> Prometheus:
        return self.replicas[0]

    @property
    def alertmanager(self) -> Alertmanager:
        return self.alertmanagers[0]

    def live_prometheus(self) -> list[Prometheus]:
        return [p for p in self.replicas if p.process.alive()]

    def live_alertmanagers(self) -> list[Alertmanager]:
        return [a for a in self.alertmanagers if a.process.alive()]

    def stop(self) -> None:
        stop_all([*self.replicas, *self.alertmanagers, self.long_term])

    def pids(self) -> dict[str, int]:
        if len(self.replicas) == 1:
            return {"prometheus": self.prometheus.pid, "alertmanager": self.alertmanager.pid}
        pids = {f"prometheus-{r}": p.pid for r, p in zip("ab", self.replicas, strict=True)} | {
            f"alertmanager-{r}": a.pid for r, a in zip("ab", self.alertmanagers, strict=True)
        }
        if self.long_term is not None:
            pids["victoria-metrics"] = self.long_term.pid
        return pids


def scrape_targets(stack: LocalStack) -> dict[str, list[str]]:
    """Job -> targets: every replica is scraped as its own target (never the balancer)."""
    targets = {
        f"qmtl-{service}": [stack.url(name) for name in stack.replica_names(service)]
        for service in ("dagmanager", "gateway", "worldservice")
    }
    targets["qmtl-sdk"] = [stack.url("sdk")]
    return targets


def start_monitoring(
    stack: LocalStack,
    *,
    rule_overrides: dict[str, Any] | None = None,
    scrape_interval: str = "5s",
    webhook_url: str | None = None,
    ha: bool = False,
) -> Monitoring:
    """Render rules (with ``rule_overrides`` of the Jsonnet config), start AM and Prometheus.

    ``ha``: the layout of ``operations/monitoring/ha/`` -- two Prometheus replicas with
    ``external_labels: {replica: a|b}`` whose alerts drop that label, both sending to two
    Alertmanager peers that gossip on loopback, so one alert is notified once -- and both
    replicas ``remote_write`` to VictoriaMetrics, dropping ``replica`` too so the store
    deduplicates the pair (one sample per scrape interval).
    """
    from qmtl.monitoring.render import dump_yaml, render

    rendered = render(rule_overrides or {})
    rules_dir = stack.workdir / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "alert_rules.yml").write_text(dump_yaml(rendered.alerts))
    (rules_dir / "recording_rules.yml").write_text(dump_yaml(rendered.rules))
    receiver: dict[str, Any] = {"name": "default"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    # HA peers: the second peer waits its peer timeout (5 s) and then checks the gossiped
    # notification log.  A group interval shorter than that lets a flush started before a
    # resolution finish after it and send a stale "firing": keep it longer.  With 2 s and
    # 5 s the one-notification drill sent a duplicate twice in a day (a loaded machine
    # delays the gossip; the peers' flushes are not in phase), so both have more room.
    am_config = yaml.safe_dump({
        "route": {"receiver": "default", "group_by": ["..."], "group_wait": "1s",
                  "group_interval": "10s" if ha else "1s", "repeat_interval": "1h"},
        "receivers": [receiver],
    })  # fmt: skip
    alertmanagers: list[Alertmanager] = []
    replicas: list[Prometheus] = []
    long_term: VictoriaMetrics | None = None
    try:
        if ha:
            long_term = start_victoria_metrics(
                stack.workdir / "victoria-metrics", dedup_interval=scrape_interval
            )
            gossip = [free_port(), free_port()]
            for i, name in enumerate("ab"):
                alertmanagers.append(start_alertmanager(
                    stack.workdir / f"alertmanager-{name}", am_config, cluster_port=gossip[i],
                    peers=[f"127.0.0.1:{gossip[1 - i]}"], peer_timeout="5s",
                ))  # fmt: skip
        else:
            alertmanagers.append(start_alertmanager(stack.workdir / "alertmanager", am_config))
        alerting: dict[str, Any] = {
            "alertmanagers": [
                {
                    "static_configs": [
                        {"targets": [a.url.removeprefix("http://") for a in alertmanagers]}
                    ]
                }
            ]
        }
        if ha:
            alerting["alert_relabel_configs"] = [{"action": "labeldrop", "regex": "replica"}]
        for name in ("a", "b") if ha else ("",):
            global_config: dict[str, Any] = {
                "scrape_interval": scrape_interval, "evaluation_interval": scrape_interval,
            }  # fmt: skip
            port = free_port()
            prom_config: dict[str, Any] = {
                "global": global_config,
                # Every file of the directory: a drill adds a rules file and reloads.
                "rule_files": [str(rules_dir / "*.yml")],
                "alerting": alerting,
                "scrape_configs": [
                    {
                        "job_name": job,
                        "static_configs": [
                            {"targets": [url.removeprefix("http://") for url in urls]}
                        ],
                    }
                    for job, urls in scrape_targets(stack).items()
                ]
                # Prometheus' own metrics: the self-alerts (rules failing, Alertmanager
                # unreachable) read them under job="prometheus".
                + [
                    {
                        "job_name": "prometheus",
                        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                    }
                ],
            }
            if name:
                global_config["external_labels"] = {"replica": name}
            if long_term is not None:
                prom_config["remote_write"] = [{
                    "url": long_term.write_url,
                    "write_relabel_configs": [{"action": "labeldrop", "regex": "replica"}],
                    "queue_config": {"batch_send_deadline": "1s"},
                }]  # fmt: skip
            replicas.append(start_prometheus(
                stack.workdir / (f"prometheus-{name}" if name else "prometheus"),
                yaml.safe_dump(prom_config),
                extra_args=["--rules.alert.resend-delay=1s"],
                port=port,
            ))  # fmt: skip
    except Exception:
        for handle in (*replicas, *alertmanagers):
            handle.stop()
        if long_term is not None:
            long_term.stop()
        raise
    return Monitoring(replicas, alertmanagers, rules_dir, long_term)


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
