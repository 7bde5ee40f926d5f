"""The one loader for ``qmtl.yml``.

Every process reads the same file so that, for example, the tracing endpoint is
configured once for SDK, Gateway and DAG Manager alike.  Values come from three
layers, later ones winning: model defaults, the YAML file, then environment
variables named ``QMTL_<SECTION>__<KEY>`` (``QMTL_GATEWAY__PORT=9000``; nested keys
use further ``__`` separators).

Anything wrong -- a missing file, a key we do not know, a value of the wrong type --
raises :class:`ConfigError` whose message names the file, the dotted key and the fix.
The CLI turns it into exit code 2; nobody should ever see a traceback for a typo.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "ConfigError",
    "ControlBusConfig",
    "DagManagerConfig",
    "DrillsConfig",
    "GatewayConfig",
    "HttpConfig",
    "QmtlConfig",
    "SdkConfig",
    "TelemetryConfig",
    "WorldServiceConfig",
    "load_config",
    "resolve_config",
]

ENV_PREFIX = "QMTL_"
ENV_SEPARATOR = "__"


class ConfigError(Exception):
    """Raised when configuration cannot be loaded; the message is meant for humans."""


def local_url(host: str, port: int) -> str:
    """The http URL of a listener on this machine: a wildcard bind is reached on loopback."""
    host = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


#: ``advertise_url``: scheme, host and port, nothing after.
_ADVERTISE = r"^https?://[^/\s]+/?$"


class _Section(BaseModel):
    # No NaN or infinity anywhere (YAML spells them .nan and .inf): a timeout of .inf is
    # a wait that never ends, and a NaN compares false with every bound.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TelemetryConfig(_Section):
    #: OTLP/HTTP traces URL (``http://localhost:4318/v1/traces``), ``console``, or unset.
    otel_exporter_endpoint: str | None = None
    #: Fraction of root traces sampled; per-node spans are only created when sampled.
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    #: Distinct label sets per metric whose labels come from clients (worlds, contexts);
    #: beyond it values become ``__other__`` and qmtl_dropped_label_values_total counts them.
    max_series_per_metric: int = Field(default=1000, ge=1)
    #: Every service checks its backends (database, broker, DAG Manager, WorldService)
    #: this often, each check within ``dependency_deadline_seconds``: qmtl_dependency_up.
    dependency_probe_seconds: float = Field(default=5.0, gt=0)
    dependency_deadline_seconds: float = Field(default=2.0, gt=0)

    @field_validator("otel_exporter_endpoint")
    @classmethod
    def _endpoint_shape(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value == "console" or value.startswith(("http://", "https://")):
            return value
        raise ValueError(
            "must be an http(s) URL such as http://localhost:4318/v1/traces, or 'console'"
        )


class ControlBusConfig(_Section):
    #: ``http``: the WorldService hosts the event log and the Gateway long-polls it
    #: (embedded default across processes); ``kafka``: a topic on a real broker;
    #: ``inprocess``: both ends in one process (tests, embedding).
    backend: Literal["http", "inprocess", "kafka"] = "http"
    url: str = "http://127.0.0.1:8020"
    brokers: str = "127.0.0.1:9092"
    topic: str = "qmtl.controlbus"
    #: Bearer token for publishing to a WorldService-hosted log that listens beyond
    #: loopback (the WorldService accepts it, or its admin_token).
    token: str | None = None


class DagManagerConfig(_Section):
    host: str = "127.0.0.1"
    http_port: int = Field(default=8010, ge=0, le=65535)
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    #: ``sqlite:PATH`` (embedded default) or a ``postgresql://`` DSN.
    graph_store: str = "sqlite:qmtl-dagmanager.db"
    queue_backend: Literal["inprocess", "kafka"] = "inprocess"
    kafka_brokers: str = "127.0.0.1:9092"
    #: Timeout of each Kafka admin call; a dead broker fails a diff after about this long.
    kafka_timeout_seconds: float = Field(default=5.0, gt=0)
    #: Compute-key isolation of queues (the default): each compute context (world,
    #: execution domain, as_of, partition) gets its own queues.  ``false`` shares queues
    #: between contexts; a diff under a second context is then refused and counted in
    #: cross_context_cache_hit_total.
    namespace_queues: bool = True
    #: Byte budget of the diff plan cache (parsed DAGs kept for re-submissions).
    plan_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    #: Replicas: GC and the lag monitor run on the holder of this lease; a standby takes
    #: over within this many seconds after the leader dies.
    leader_lease_seconds: float = Field(default=15.0, gt=0)
    max_dag_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    gc_interval_seconds: float = Field(default=60.0, gt=0)
    orphan_ttl_seconds: float = Field(default=3600.0, ge=0)
    orphan_grace_seconds: float = Field(default=600.0, ge=0)
    gc_policy: Literal["drop", "archive"] = "drop"
    lag_interval_seconds: float = Field(default=15.0, gt=0)
    lag_consumer_group: str = "qmtl-runtime"
    lag_threshold_seconds: float = Field(default=60.0, ge=0)
    #: Per-topic overrides of :attr:`lag_threshold_seconds`.
    lag_thresholds: dict[str, float] = Field(default_factory=dict)
    breaker_probe_seconds: float = Field(default=5.0, gt=0)
    #: Window of the diff_duration_ms_p95 gauge (5 minutes: the diff SLO window).
    p95_window_seconds: float = Field(default=300.0, gt=0)
    #: Bearer token of the admin endpoints and, beyond loopback, of the gRPC port
    #: (Gateways send it as ``authorization`` metadata).
    admin_token: str | None = None
    #: The HTTP URL other processes reach this DAG Manager at (the WorldService's guard
    #: reads its /admin/cross-context); default: the bound address and ``http_port``.
    #: In Kubernetes: the Service, ``http://qmtl-dagmanager:8010``.
    advertise_url: str | None = Field(default=None, pattern=_ADVERTISE)

    @property
    def url(self) -> str:
        return (self.advertise_url or local_url(self.host, self.http_port)).rstrip("/")


class GatewayConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    dagmanager_grpc: str = "127.0.0.1:50051"
    #: Deadline of each diff call to the DAG Manager; a hung DAG Manager costs a
    #: submission this long, then it is retried from the log.
    dagmanager_timeout_seconds: float = Field(default=10.0, gt=0)
    #: ``sqlite:PATH`` (embedded default) or a ``postgresql://`` DSN.
    submission_log: str = "sqlite:qmtl-gateway.db"
    max_request_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    retry_interval_seconds: float = Field(default=2.0, gt=0)
    breaker_probe_seconds: float = Field(default=2.0, gt=0)
    #: Retries of submissions kept in the log while the DAG Manager is unavailable.
    max_attempts: int = Field(default=20, gt=0)
    #: Admission: submissions being received or worked on at once; beyond it ``429``
    #: with ``Retry-After`` before the body is read.
    max_in_flight_submissions: int = Field(default=128, gt=0)
    #: Admission: declared body bytes of those submissions together (one is always let in).
    max_in_flight_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    #: Admission: pending submissions in the log (waiting for a retry); beyond it new
    #: submissions get ``429`` until the backlog drains.
    max_pending_submissions: int = Field(default=10_000, gt=0)
    #: Window of the gateway_e2e_latency_p95 gauge (5 minutes, the window of the latency alerts).
    p95_window_seconds: float = Field(default=300.0, gt=0)
    #: This replica's name: lease owner in the submission log, ControlBus consumer group,
    #: gateway_id of its ACKs.  Keep it stable across restarts; unique per replica.
    #: Default: ``gateway-<port>`` (one replica per port on a host).
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    #: How long a submission being worked on stays leased to its replica; longer than
    #: the DAG Manager call timeout, so no live replica retries an in-flight submission.
    lease_seconds: float = Field(default=60.0, gt=0)
    #: Extra wait before another replica takes over a lapsed lease (the holder goes first).
    claim_grace_seconds: float = Field(default=5.0, ge=0)
    #: Each replica renews a liveness lease in the submission log every third of this; a
    #: replica silent this long is dead and its in-flight submissions are taken over at
    #: once (their answers are unchanged: the DAG Manager knows a submission's bindings).
    replica_liveness_seconds: float = Field(default=6.0, gt=0)
    #: Heartbeat on the ControlBus: WorldServices wait for the ACKs of live Gateways.
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    #: A freeze lapses by itself after its deadline (sent by the WorldService), and never
    #: later than this; also how far back a (re)joining Gateway replays the ControlBus.
    max_freeze_seconds: float = Field(default=120.0, gt=0)
    admin_token: str | None = None
    #: Bearer token of ``POST /strategies`` when the Gateway listens beyond loopback
    #: (SDK processes send ``sdk.gateway_token``).
    submit_token: str | None = None
    #: The URL strategies and operators reach this Gateway at; default: the bound
    #: address and port.
    advertise_url: str | None = Field(default=None, pattern=_ADVERTISE)

    @property
    def url(self) -> str:
        return (self.advertise_url or local_url(self.host, self.port)).rstrip("/")

    @model_validator(mode="after")
    def _lease_outlives_a_call(self) -> GatewayConfig:
        if self.lease_seconds <= self.dagmanager_timeout_seconds:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be longer than "
                f"dagmanager_timeout_seconds ({self.dagmanager_timeout_seconds:g}), or another "
                "replica could diff a submission that is still in flight; raise lease_seconds"
            )
        return self


class WorldServiceConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8020, ge=0, le=65535)
    store: str = "sqlite:qmtl-worldservice.db"
    ack_timeout_seconds: float = Field(default=10.0, gt=0)
    stale_after_seconds: float = Field(default=300.0, gt=0)
    stale_interval_seconds: float = Field(default=15.0, gt=0)
    runs_kept_per_world: int = Field(default=20, gt=0)
    #: Gateways send freeze/unfreeze ACKs; one that sent no heartbeat for this long is
    #: not waited for.
    gateway_liveness_seconds: float = Field(default=15.0, gt=0)
    #: Gateways unfreeze a world by themselves this long after a freeze (should this
    #: WorldService die mid-apply).  Default: twice the longest apply (2 x 2 ACK timeouts).
    freeze_deadline_seconds: float | None = Field(default=None, gt=0)
    #: One apply run per world across replicas: a run holds the world's lease, renewed
    #: every third of this; a replica that dies mid-apply loses it within this long and
    #: another WorldService fails the run (rollback unfreeze).
    apply_lease_seconds: float = Field(default=15.0, gt=0)
    #: The promotion guard always reads the DAG Manager of this file and every SDK
    #: process that submitted with its admin URL; these are extra ``/admin/cross-context``
    #: URLs.  When ``prometheus_url`` is set it also asks Prometheus.
    cross_context_sources: list[str] = Field(default_factory=list)
    prometheus_url: str | None = None
    #: The label matchers that pick QMTL's own series when the guard asks Prometheus:
    #: one shared with other applications, or another QMTL, holds other series of the
    #: same name.  The default matches the scrape jobs of the monitoring bundle and the
    #: chart (which adds its namespace).
    prometheus_selector: str = Field(
        default='job=~"qmtl-dagmanager|qmtl-gateway|qmtl-worldservice|qmtl-sdk"', min_length=1
    )
    #: The cross-context counter must stay at zero this long after the last hit is
    #: cleared before promotions resume.
    promotion_hold_seconds: float = Field(default=600.0, ge=0)
    #: How often the guard reads its sources between applies (to notice resets).
    guard_poll_seconds: float = Field(default=15.0, gt=0)
    #: An SDK source unreachable this long is treated as ended (its counter died with it).
    guard_source_expiry_seconds: float = Field(default=600.0, gt=0)
    #: Hosts the guard may contact for SDK admin URLs that submissions name, beyond
    #: loopback: IP networks (``10.0.0.0/8``), host names, or domain suffixes
    #: (``.svc.cluster.local``).  Names are matched as written, never resolved.
    guard_allowed_sources: list[str] = Field(default_factory=list)
    #: Most SDK admin URLs the guard reads at once; registrations beyond it are refused.
    guard_max_sources: int = Field(default=1000, gt=0)
    #: Largest accepted request body (worlds, allocations, apply plans, events).
    max_request_bytes: int = Field(default=1024 * 1024, gt=0)
    admin_token: str | None = None
    #: The URL other processes reach this WorldService at (Gateways register SDK admin
    #: URLs with its promotion guard); default: the bound address and port.
    advertise_url: str | None = Field(default=None, pattern=_ADVERTISE)

    @property
    def url(self) -> str:
        return (self.advertise_url or local_url(self.host, self.port)).rstrip("/")

    @property
    def freeze_deadline(self) -> float:
        return self.freeze_deadline_seconds or 4 * self.ack_timeout_seconds


class SdkConfig(_Section):
    #: Address the strategy process's listeners bind (``metrics.start_metrics_server``
    #: and the admin endpoint): loopback by default; ``0.0.0.0`` where a Prometheus in
    #: another pod or host scrapes it (its admin actions then need ``admin_token``).
    host: str = "127.0.0.1"
    #: Admin/metrics port of SDK runner processes (``LiveRunner``, the `qmtl up` demo):
    #: /metrics, cache purge and cross-context resets.
    admin_port: int = Field(default=8001, ge=0, le=65535)
    #: The admin URL a strategy process gives the promotion guard when it submits, as the
    #: WorldService reaches it (in Kubernetes: ``http://$(POD_IP):8001``).  Default: the
    #: bound address and port.
    advertise_url: str | None = Field(default=None, pattern=_ADVERTISE)
    #: Bearer token of the SDK admin endpoints when they listen beyond loopback.
    admin_token: str | None = None
    #: Sent as the bearer token of submissions (the Gateway's ``submit_token``).
    gateway_token: str | None = None


class HttpConfig(_Section):
    """Limits of every QMTL HTTP listener (Gateway, DAG Manager, WorldService)."""

    #: A request's line and headers must arrive within this many seconds (else 408).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Its body, once the headers are in, within this many seconds (else closed).
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    #: Open connections per listener; beyond it new ones get 503 and are closed.  Lowered
    #: to the process's file-descriptor limit when that is smaller.
    max_connections: int = Field(default=4096, gt=0)
    #: Open connections per client address (429 beyond).  Behind a load balancer every
    #: connection comes from its address: size this for the balancer's own pool.
    max_connections_per_client: int = Field(default=512, gt=0)
    #: At SIGTERM, requests in flight get this long to finish; then they are cancelled.
    #: Keep it below the orchestrator's kill deadline (Kubernetes: 30 s by default).
    shutdown_grace_seconds: float = Field(default=10.0, gt=0)


class DrillsConfig(_Section):
    #: Install the fault-injection wrappers and ``/admin/faults`` (drills, the e2e suite,
    #: ``qmtl up``).  Off by default: no fault branch on any hot path, ``/admin/faults`` 404.
    enabled: bool = False


class QmtlConfig(_Section):
    drills: DrillsConfig = Field(default_factory=DrillsConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    controlbus: ControlBusConfig = Field(default_factory=ControlBusConfig)
    dagmanager: DagManagerConfig = Field(default_factory=DagManagerConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    worldservice: WorldServiceConfig = Field(default_factory=WorldServiceConfig)
    sdk: SdkConfig = Field(default_factory=SdkConfig)


class _StrictLoader(yaml.SafeLoader):
    """YAML without the two surprises a configuration file can hide: a key given twice
    (the last one silently won) and aliases (``&a`` / ``*a``), which let a few lines
    expand into a structure of any size -- a ten-line file made a 522 MB error message."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None,
                f"alias *{event.anchor} is not accepted in QMTL configuration; write the value "
                "out where it is used",
                event.start_mark,
            )  # fmt: skip
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no object tags


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found; create it or pass --config with an existing file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(
            f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: top level must be a mapping of sections, got {type(data).__name__}"
        )
    return data


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Merge ``QMTL_SECTION__KEY`` variables into ``data``; return their names."""
    applied = []
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_SEPARATOR)]
        if any(not part for part in path):
            raise ConfigError(
                f"environment variable {name}: empty key segment; use QMTL_SECTION__KEY"
            )
        try:
            value = _load_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment variable {name}: {part} is not a section")
            node = child
        node[path[-1]] = value
        applied.append(name)
    return applied


#: Keys whose values are never echoed in an error message (a mistyped secret is a secret).
_SECRET_PARTS = ("token", "password", "secret")


def _describe(error: Any) -> str:
    key = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        parent = ".".join(str(p) for p in error["loc"][:-1]) or "top level"
        return f"{key}: unknown key in {parent}; check the spelling or remove it"
    got = error.get("input")
    if isinstance(got, dict | list) or any(part in key.lower() for part in _SECRET_PARTS):
        shown = ""
    else:
        text = repr(got)
        shown = f" (got {text if len(text) <= 80 else text[:77] + '...'})"
    return f"{key}: {error['msg']}{shown}"


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> QmtlConfig:
    """Load ``qmtl.yml`` (or only defaults when ``path`` is None) plus env overrides."""
    env = os.environ if env is None else env
    source = str(path) if path is not None else "defaults"
    data = _read_yaml(Path(path)) if path is not None else {}
    applied = _apply_env(data, env)
    try:
        return QmtlConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        via = f" (environment overrides: {', '.join(applied)})" if applied else ""
        raise ConfigError(f"{source}: invalid configuration{via}: {problems}") from None


def resolve_config(path: str | os.PathLike[str] | None = None) -> QmtlConfig:
    """The configuration a QMTL process runs with.

    ``path`` (``--config``) if given, else ``$QMTL_CONFIG``, else ``./qmtl.yml`` when it
    exists, else built-in defaults -- always plus ``QMTL_SECTION__KEY`` overrides.  Every
    process (services, ``qmtl ops``, SDK runners) resolves it the same way, so one file
    configures, e.g., tracing for all of them.
    """
    if path is None:
        path = os.environ.get("QMTL_CONFIG") or None
    if path is not None:
        return load_config(path)
    default = Path("qmtl.yml")
    return load_config(default if default.is_file() else None)
