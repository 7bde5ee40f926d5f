"""``qmtl up``: the local stack with a demo strategy, metrics and alerts visible.

Starts (all on 127.0.0.1, all state and logs in ``--state-dir``): DAG Manager,
WorldService, Gateway, the demo workload (two moving-average strategies submitted
through the Gateway, an apply run in world ``demo``), an Alertmanager and a Prometheus
loading the alert and recording rules rendered from ``operations/monitoring``.  Then
prints where everything is and a live status view.  Ctrl-C stops everything it started
(by PID) and nothing else.

    qmtl up [--state-dir .qmtl-stack] [--no-prometheus] [--with kafka,postgres] [--duration N]
"""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import sys
import time
from pathlib import Path

import httpx

from qmtl.testing.components import (
    ComponentUnavailable,
    Kafka,
    Postgres,
    find_binary,
    start_kafka,
    start_postgres,
)
from qmtl.testing.processes import ProcessError
from qmtl.testing.stack import LocalStack, Monitoring, start_demo, start_monitoring

__all__ = ["main"]

MARKER = ".qmtl-stack"
INSTALL_HINT = "install Prometheus and Alertmanager with: apt-get install prometheus prometheus-alertmanager (or run scripts/setup.sh)"
STATUS_QUERIES = {
    "diffs/min": "sum(job:diff_requests:rate5m) * 60",
    "diff p95 ms": "max(diff_duration_ms_p95)",
    "submit p95 ms": "max(gateway_e2e_latency_p95)",
    "node exec/s": "sum(node_id:node_processed:rate5m)",
    "apply runs": 'count(world_apply_run_total{status="success"})',
}


def _step(index: int, total: int, text: str) -> None:
    print(f"[{index}/{total}] {text} ...", end="", flush=True)


def _prepare_state_dir(path: Path) -> Path:
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise SystemExit(
                f"qmtl up: {path} is not empty and not a qmtl state directory; choose another --state-dir"
            )
        for child in path.iterdir():
            if child.name != MARKER:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("state directory of `qmtl up`; emptied on every start\n")
    return path


def _query(prometheus: str, expr: str) -> float | None:
    try:
        result = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=3).json()[
            "data"
        ]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    return float(result[0]["value"][1]) if result else None


def status_lines(monitoring: Monitoring | None, stack: LocalStack) -> list[str]:
    """One screen of status: targets, key rates, alerts (from Prometheus when running)."""
    if monitoring is None:
        up = []
        for name in ("dagmanager", "gateway", "worldservice", "sdk"):
            try:
                ok = httpx.get(f"{stack.url(name)}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                ok = False
            up.append(f"{name}={'up' if ok else 'DOWN'}")
        return ["targets: " + "  ".join(up) + "   (no Prometheus: rates and alerts unavailable)"]
    prometheus = monitoring.prometheus.url
    try:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=3).json()["data"][
            "activeTargets"
        ]
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=3).json()["data"]["alerts"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return [f"prometheus unreachable: {exc}"]
    up = "  ".join(
        f"{t['labels']['job'].removeprefix('qmtl-')}={t['health']}"
        for t in sorted(targets, key=lambda t: t["labels"]["job"])
    )
    rates = []
    for label, expr in STATUS_QUERIES.items():
        value = _query(prometheus, expr)
        rates.append(f"{label}={'-' if value is None or math.isnan(value) else f'{value:.1f}'}")
    firing = sorted(a["labels"]["alertname"] for a in alerts if a["state"] == "firing")
    pending = sorted(a["labels"]["alertname"] for a in alerts if a["state"] == "pending")
    return [
        f"targets: {up}",
        "rates:   " + "  ".join(rates),
        f"alerts:  firing={', '.join(firing) or 'none'}  pending={', '.join(pending) or 'none'}",
    ]


def main(args: argparse.Namespace) -> int:
    wanted = {w.strip() for w in args.with_.split(",") if w.strip()}
    unknown = wanted - {"kafka", "postgres"}
    if unknown:
        print(
            f"qmtl up: --with accepts kafka,postgres; unknown: {', '.join(sorted(unknown))}",
            file=sys.stderr,
        )
        return 2
    if not args.no_prometheus:
        try:
            find_binary(["prometheus"], INSTALL_HINT)
            find_binary(["prometheus-alertmanager", "alertmanager"], INSTALL_HINT)
        except ComponentUnavailable as exc:
            print(
                f"qmtl up: {exc}\n         or start without monitoring: qmtl up --no-prometheus",
                file=sys.stderr,
            )
            return 2
    state = _prepare_state_dir(Path(args.state_dir))
    total = 5 + len(wanted) + (0 if args.no_prometheus else 1)
    step = 0
    kafka: Kafka | None = None
    postgres: Postgres | None = None
    stack: LocalStack | None = None
    monitoring: Monitoring | None = None
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if "kafka" in wanted:
            step += 1
            _step(step, total, "starting Kafka (tansu)")
            kafka = start_kafka(state / "kafka")
            print(f" {kafka.bootstrap} (pid {kafka.pid})")
        if "postgres" in wanted:
            step += 1
            _step(step, total, "starting PostgreSQL")
            postgres = start_postgres()
            print(f" {postgres.dsn} (pid {postgres.pid})")
        stack = LocalStack(
            state,
            kafka=kafka.bootstrap if kafka else None,
            postgres_dsn=postgres.dsn if postgres else None,
        )
        for name, label in (
            ("dagmanager", "DAG Manager"),
            ("worldservice", "WorldService"),
            ("gateway", "Gateway"),
        ):
            step += 1
            _step(step, total, f"starting {label}")
            service = stack.start_service(name)
            print(f" {stack.url(name)} (pid {service.pid})")
        step += 1
        _step(step, total, "starting the demo strategies")
        demo = start_demo(stack)
        print(f" {stack.url('sdk')}/metrics (pid {demo.pid})")
        if not args.no_prometheus:
            step += 1
            _step(step, total, "starting Prometheus and Alertmanager")
            monitoring = start_monitoring(stack)
            print(
                f" {monitoring.prometheus.url} (pid {monitoring.prometheus.pid}), {monitoring.alertmanager.url} (pid {monitoring.alertmanager.pid})"
            )
        step += 1
        print(f"[{step}/{total}] ready. State, config and logs: {state}")
        print(f"\n  Gateway      {stack.url('gateway')}/status")
        print(f"  WorldService {stack.url('worldservice')}/allocations")
        print(f"  DAG Manager  {stack.url('dagmanager')}/status   gRPC {stack.grpc_target}")
        print(f"  SDK demo     {stack.url('sdk')}/metrics")
        if monitoring:
            print(f"  Prometheus   {monitoring.prometheus.url}/alerts")
            print(f"  Alertmanager {monitoring.alertmanager.url}")
        print(
            f"  ops          qmtl ops --help  (e.g. qmtl ops cross-context show --config {stack.config_path})"
        )
        print("\nCtrl-C stops everything started here.\n", flush=True)
        deadline = time.monotonic() + args.duration if args.duration else math.inf
        while time.monotonic() < deadline:
            for name, service in list(stack.services.items()):
                if not service.process.alive():
                    print(
                        f"qmtl up: {name} exited; see {service.process.log_path}", file=sys.stderr
                    )
                    return 1
            stamp = time.strftime("%H:%M:%S")
            for line in status_lines(monitoring, stack):
                print(f"{stamp} {line}")
            print(flush=True)
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        return 0
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except (ProcessError, ComponentUnavailable) as exc:
        print(f"\nqmtl up: {exc}", file=sys.stderr)
        return 1
    finally:
        if monitoring is not None:
            monitoring.stop()
        if stack is not None:
            stack.stop()
        if postgres is not None:
            postgres.stop()
        if kafka is not None:
            kafka.stop()
        print("stopped.", flush=True)
