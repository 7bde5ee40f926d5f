"""``qmtl up``: the local stack with a demo strategy, metrics and alerts visible.

Starts (all on 127.0.0.1, all state and logs in ``--state-dir``): DAG Manager,
WorldService, Gateway, the demo workload (two moving-average strategies submitted
through the Gateway, an apply run in world ``demo``), an Alertmanager and a Prometheus
loading the alert and recording rules rendered from the monitoring mixin.  Then prints
where everything is and a live status view.  Ctrl-C (or SIGTERM) stops everything it
started, by PID; children also die with ``qmtl up`` if it is killed.

    qmtl up [--state-dir .qmtl-stack] [--no-prometheus] [--with kafka,postgres] [--duration N]
            [--replicas N] [--ha]

With ``--replicas N`` every service runs N times behind HAProxy, on Kafka and PostgreSQL
(``--replicas`` implies ``--with kafka,postgres``); the printed Gateway URL is the
balancer's, and Prometheus scrapes each replica as its own target.  With ``--ha``
monitoring runs as two Prometheus replicas and two clustered Alertmanager peers (the
layout of ``operations/monitoring/ha/``), and each alert is still notified once; both
replicas remote-write to a VictoriaMetrics long-term store.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from qmtl.devstack.components import (
    ComponentUnavailable,
    Kafka,
    Postgres,
    find_binary,
    start_kafka,
    start_postgres,
)
from qmtl.devstack.processes import ProcessError, alive, stop_all
from qmtl.devstack.stack import LocalStack, Monitoring, start_demo, start_monitoring, write_pids
from qmtl.devstack.status import StatusView, health_status, prometheus_status
from qmtl.foundation.interrupts import interrupt_on_ctrl_c_and_term

__all__ = ["StateDirError", "main", "prepare_state_dir"]

MARKER = ".qmtl-stack"
HAPROXY_HINT = "install it with: apt-get install haproxy (or run scripts/setup.sh)"
INSTALL_HINT = (
    "install Prometheus and Alertmanager with: apt-get install prometheus "
    "prometheus-alertmanager (or run scripts/setup.sh)"
)
EXIT_FAILURE, EXIT_USAGE = 1, 2


class StateDirError(Exception):
    """The state directory cannot be used; ``exit_code`` says whether it is usage (2) or a conflict (1)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def prepare_state_dir(path: Path) -> Path:
    """Empty a state directory of ours (refusing a foreign one, or one still in use)."""
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise StateDirError(f"{path} is not a directory; choose another --state-dir", EXIT_USAGE)
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise StateDirError(
                f"{path} is not empty and not a qmtl state directory; choose another --state-dir",
                EXIT_USAGE,
            )
        try:
            recorded = json.loads((path / "pids.json").read_text())
        except (OSError, ValueError):
            recorded = {}
        running = {name: pid for name, pid in recorded.items() if alive(int(pid))}
        if running:
            names = ", ".join(f"{name} (pid {pid})" for name, pid in sorted(running.items()))
            raise StateDirError(
                f"{path} is in use by a running stack: {names}; stop it (Ctrl-C in its "
                "terminal) or choose another --state-dir",
                EXIT_FAILURE,
            )
        for child in path.iterdir():
            if child.name != MARKER:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("state directory of `qmtl up`; emptied on every start\n")
    return path


class _Progress:
    """Numbered start-up steps, each closed with where it runs and how long it took.

    The time is there so that a slow start names its slow component, and every line is
    flushed so that a reader of a pipe (a supervisor, a test) sees each step as it ends.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0
        self._began = time.monotonic()

    def begin(self, text: str) -> None:
        self.index += 1
        self._began = time.monotonic()
        print(f"[{self.index}/{self.total}] {text} ...", end="", flush=True)

    def end(self, text: str) -> None:
        print(f" {text} [{time.monotonic() - self._began:.1f} s]", flush=True)


def main(args: argparse.Namespace) -> int:
    wanted = {w.strip() for w in args.with_.split(",") if w.strip()}
    unknown = wanted - {"kafka", "postgres"}
    if unknown:
        print(
            f"qmtl up: --with accepts kafka,postgres; unknown: {', '.join(sorted(unknown))}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.duration is not None and args.duration <= 0:
        print("qmtl up: --duration must be a positive number of seconds", file=sys.stderr)
        return EXIT_USAGE
    replicas = getattr(args, "replicas", 1)
    if not 1 <= replicas <= 8:
        print("qmtl up: --replicas takes 1 to 8", file=sys.stderr)
        return EXIT_USAGE
    if replicas > 1:
        wanted |= {"kafka", "postgres"}  # replicas share their stores and their bus
        try:
            find_binary(["haproxy"], HAPROXY_HINT, ["/usr/sbin", "/usr/local/sbin"])
        except ComponentUnavailable as exc:
            print(f"qmtl up: {exc}", file=sys.stderr)
            return EXIT_USAGE
    ha = bool(getattr(args, "ha", False))
    if ha and args.no_prometheus:
        print(
            "qmtl up: --ha runs highly available monitoring; drop --no-prometheus", file=sys.stderr
        )
        return EXIT_USAGE
    if not args.no_prometheus:
        try:
            find_binary(["prometheus"], INSTALL_HINT)
            find_binary(["prometheus-alertmanager", "alertmanager"], INSTALL_HINT)
        except ComponentUnavailable as exc:
            print(
                f"qmtl up: {exc}\n         or start without monitoring: qmtl up --no-prometheus",
                file=sys.stderr,
            )
            return EXIT_USAGE
    try:
        state = prepare_state_dir(Path(args.state_dir))
    except StateDirError as exc:
        print(f"qmtl up: {exc}", file=sys.stderr)
        return exc.exit_code
    total = 3 * replicas + 2 + len(wanted) + (0 if args.no_prometheus else 1) + (replicas > 1)
    progress = _Progress(total)
    kafka: Kafka | None = None
    postgres: Postgres | None = None
    stack: LocalStack | None = None
    monitoring: Monitoring | None = None
    pids: dict[str, int] = {}

    def started(name: str, pid: int) -> None:
        pids[name] = pid
        write_pids(state, pids)

    interrupt_on_ctrl_c_and_term()
    try:
        if "kafka" in wanted:
            progress.begin("starting Kafka (tansu)")
            kafka = start_kafka(state / "kafka")
            started("kafka", kafka.pid)
            progress.end(f"{kafka.bootstrap} (pid {kafka.pid})")
        if "postgres" in wanted:
            progress.begin("starting PostgreSQL")
            postgres = start_postgres()
            started("postgres", postgres.pid)
            progress.end(f"{postgres.dsn} (pid {postgres.pid})")
        stack = LocalStack(
            state,
            kafka=kafka.bootstrap if kafka else None,
            postgres_dsn=postgres.dsn if postgres else None,
            replicas=replicas,
        )
        for name, label in (
            ("dagmanager", "DAG Manager"),
            ("worldservice", "WorldService"),
            ("gateway", "Gateway"),
        ):
            for replica in stack.replica_names(name):
                suffix = f" replica {replica.rsplit('-', 1)[1]}" if replica != name else ""
                progress.begin(f"starting {label}{suffix}")
                service = stack.start_service(replica)
                started(replica, service.pid)
                progress.end(f"{stack.url(replica)} (pid {service.pid})")
        if replicas > 1:
            progress.begin("starting HAProxy in front of the replicas")
            balancer = stack.start_balancer()
            started("haproxy", balancer.pid)
            progress.end(f"{balancer.stats_url}/metrics (pid {balancer.pid})")
        progress.begin("starting the demo strategies")
        demo = start_demo(stack)
        started("sdk", demo.pid)
        progress.end(f"{stack.url('sdk')}/metrics (pid {demo.pid})")
        if not args.no_prometheus:
            progress.begin("starting Prometheus and Alertmanager" + (" (HA pairs)" if ha else ""))
            monitoring = start_monitoring(stack, ha=ha)
            for name, pid in monitoring.pids().items():
                started(name, pid)
            handles = [(p.url, p.pid) for p in monitoring.replicas] + [
                (a.url, a.pid) for a in monitoring.alertmanagers
            ]
            if monitoring.long_term is not None:
                handles.append((monitoring.long_term.url, monitoring.long_term.pid))
            progress.end(", ".join(f"{url} (pid {pid})" for url, pid in handles))
        print(f"[{total}/{total}] ready. State, config and logs: {state}")
        behind = f"   ({replicas} replicas behind HAProxy)" if replicas > 1 else ""
        header = [
            f"  Gateway      {stack.url('gateway')}/status{behind}",
            f"  WorldService {stack.url('worldservice')}/allocations",
            f"  DAG Manager  {stack.url('dagmanager')}/status   gRPC {stack.grpc_target}",
            f"  SDK demo     {stack.url('sdk')}/metrics",
        ]
        if monitoring:
            for replica, prometheus in zip("ab", monitoring.replicas, strict=False):
                label = f"Prometheus ({replica})" if ha else "Prometheus"
                header.append(f"  {label:<12} {prometheus.url}/alerts")
            for peer, alertmanager in zip("ab", monitoring.alertmanagers, strict=False):
                label = f"Alertmanager ({peer})" if ha else "Alertmanager"
                header.append(f"  {label:<12} {alertmanager.url}")
            if monitoring.long_term is not None:
                header.append(
                    f"  {'Long-term':<12} {monitoring.long_term.url}/vmui (VictoriaMetrics)"
                )
        header.append(f"  ops          qmtl ops cross-context show --config {stack.config_path}")
        print("\n" + "\n".join(header))
        print("\nCtrl-C stops everything started here.\n", flush=True)
        urls = {
            name: stack.url(name)
            for service in ("dagmanager", "gateway", "worldservice")
            for name in stack.replica_names(service)
        } | {"sdk": stack.url("sdk")}
        prometheus_url = monitoring.prometheus.url if monitoring else None
        view = StatusView(
            sys.stdout,
            header,
            lambda: prometheus_status(prometheus_url) if prometheus_url else health_status(urls),
        )
        deadline = time.monotonic() + args.duration if args.duration else float("inf")
        reported: set[str] = set()
        while time.monotonic() < deadline:
            for name, service in list(stack.services.items()):
                if not service.process.alive() and name not in reported:
                    reported.add(name)
                    print(
                        f"qmtl up: {name} exited; see {service.process.log_path}", file=sys.stderr
                    )
                    if replicas == 1 or name == "sdk":
                        return EXIT_FAILURE
                    # A replica is gone: its peers serve on (that is what replicas are for).
            view.update()
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        return 0
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except (ProcessError, ComponentUnavailable) as exc:
        print(f"\nqmtl up: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        # Everything is stopped even if one process will not go; then its ProcessError
        # names it, and pids.json stays: a second qmtl up must not start beside it.
        stop_all([monitoring, stack, postgres, kafka])
        (state / "pids.json").unlink(missing_ok=True)
        print("stopped.", flush=True)
