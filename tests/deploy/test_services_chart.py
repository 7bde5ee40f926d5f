"""The services chart (deploy/helm/qmtl): renders, validates against Kubernetes and the
Prometheus Operator, writes a qmtl.yml the services accept, and refuses bad values."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from qmtl.devstack import find_binary
from qmtl.foundation.config import load_config
from qmtl.monitoring.render import REPO_ROOT
from qmtl.testing import kube

CHART = REPO_ROOT / "deploy" / "helm" / "qmtl"
TOKENS = {
    "tokens": {
        "dagmanagerAdmin": "t1", "gatewayAdmin": "t2", "gatewaySubmit": "t3",
        "worldserviceAdmin": "t4", "controlbus": "t5",
    }
}  # fmt: skip
#: The shapes users deploy: one replica each on SQLite, and the production example.
SHAPES = {"defaults": [], "production": [CHART / "values-production.yaml"]}


@pytest.fixture(scope="module")
def helm() -> str:
    return find_binary(["helm"], "run scripts/setup.sh", [str(REPO_ROOT / ".tools")])


def render(helm: str, tmp_path: Path, *files: Path, values: dict[str, Any] | None = None,
           release: str = "prod") -> subprocess.CompletedProcess[str]:  # fmt: skip
    extra = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
    extra.write_text(yaml.safe_dump(values if values is not None else TOKENS))
    argv = [helm, "template", release, str(CHART), "--namespace", "trading"]
    for path in (*files, extra):
        argv += ["-f", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def docs_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_helm_lint_strict(helm: str, tmp_path: Path, shape: str) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    argv = [helm, "lint", "--strict", str(CHART), "-f", str(tokens)]
    for path in SHAPES[shape]:
        argv += ["-f", str(path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("version", kube.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_objects_validate_against_kubernetes(
    helm: str, tmp_path: Path, shape: str, version: str
) -> None:
    docs = docs_of(render(helm, tmp_path, *SHAPES[shape]))
    assert kube.validate_core(docs, version) == []
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds
    assert ("Secret" in kinds) == (shape == "defaults")  # production names existing Secrets


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_monitors_validate_against_the_prometheus_operator(
    helm: str, tmp_path: Path, shape: str
) -> None:
    docs = docs_of(render(helm, tmp_path, *SHAPES[shape]))
    assert len([d for d in docs if d["kind"] in kube.OPERATOR_KINDS]) == 4
    assert kube.check_operator_objects(docs) == []


def test_the_operator_check_catches_an_unknown_field(helm: str, tmp_path: Path) -> None:
    docs = docs_of(render(helm, tmp_path))
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeIntervall"] = "5s"
    bad_type = next(d for d in docs if d["kind"] == "PodMonitor")
    bad_type["spec"]["podMetricsEndpoints"][0]["port"] = 8001
    problems = kube.check_operator_objects([monitor, bad_type])
    assert any("scrapeIntervall" in p for p in problems), problems
    assert any("port" in p for p in problems), problems


def test_core_validation_catches_an_unknown_field(helm: str, tmp_path: Path) -> None:
    deployment = next(d for d in docs_of(render(helm, tmp_path)) if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert kube.validate_core([deployment], kube.KUBERNETES_VERSIONS[0])


def test_job_names_are_the_ones_the_alerts_select(helm: str, tmp_path: Path) -> None:
    docs = docs_of(render(helm, tmp_path))
    monitors = [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]
    jobs = set()
    for monitor in monitors:
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        jobs |= {
            r["replacement"]
            for e in endpoints
            for r in e["relabelings"]
            if r["targetLabel"] == "job"
        }
    rules = (REPO_ROOT / "alert_rules.yml").read_text()
    assert jobs == {"qmtl-gateway", "qmtl-dagmanager", "qmtl-worldservice", "qmtl-sdk"}
    for job in jobs:
        assert f'job="{job}"' in rules or job in rules, job


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_pod_loads_the_rendered_qmtl_yml(helm: str, tmp_path: Path, shape: str) -> None:
    """What each container would load: the ConfigMap's qmtl.yml plus its environment
    (secrets as placeholders), through the services' own loader."""
    docs = docs_of(render(helm, tmp_path, *SHAPES[shape]))
    (config_map,) = by_kind(docs, "ConfigMap").values()
    path = tmp_path / "qmtl.yml"
    path.write_text(config_map["data"]["qmtl.yml"])
    for name, deployment in by_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") or f"from-{name}" for e in container["env"]}
        config = load_config(path, env=env)
        service = container["args"][1]
        section = getattr(config, service)
        assert section.host == "0.0.0.0"
        if service == "gateway":
            assert config.gateway.dagmanager_grpc.startswith("prod-qmtl-dagmanager:")
            assert config.gateway.submit_token and config.gateway.admin_token
            assert config.worldservice.url.startswith("http://prod-qmtl-worldservice:")
        if shape == "production":
            store = {
                "gateway": "submission_log",
                "dagmanager": "graph_store",
                "worldservice": "store",
            }[service]
            assert getattr(section, store) == f"from-{name}", "the DSN comes from the Secret"
        # Non-root, read-only root file system, nothing extra: the settings the image needs.
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
        assert (
            pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
        )
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_production_example_runs_replicas_on_postgres_and_kafka(helm: str, tmp_path: Path) -> None:
    docs = docs_of(render(helm, tmp_path, CHART / "values-production.yaml"))
    replicas = {name: d["spec"]["replicas"] for name, d in by_kind(docs, "Deployment").items()}
    assert all(count >= 2 for count in replicas.values()), replicas
    qmtl_yml = yaml.safe_load(by_kind(docs, "ConfigMap")["prod-qmtl-config"]["data"]["qmtl.yml"])
    assert qmtl_yml["controlbus"]["backend"] == "kafka"
    assert qmtl_yml["dagmanager"]["queue_backend"] == "kafka"
    assert qmtl_yml["worldservice"]["prometheus_url"]
    # The guard asks a Prometheus other releases share: only this namespace's QMTL jobs.
    assert qmtl_yml["worldservice"]["prometheus_selector"] == (
        'job=~"qmtl-dagmanager|qmtl-gateway|qmtl-worldservice|qmtl-sdk",namespace="trading"'
    )


def test_existing_secrets_are_used_and_none_is_created(helm: str, tmp_path: Path) -> None:
    values = {
        "tokens": {"existingSecret": "qmtl-tokens"},
        "postgresql": {"existingSecret": "qmtl-pg"},
    }
    docs = docs_of(render(helm, tmp_path, values=values))
    assert not by_kind(docs, "Secret")
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for d in by_kind(docs, "Deployment").values()
        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {"qmtl-tokens", "qmtl-pg"}


BAD_VALUES = {
    "no token": ({"tokens": {"gatewayAdmin": "x"}}, "tokens.dagmanagerAdmin is empty"),
    "replicas on SQLite": (
        {**TOKENS, "gateway": {"replicas": 2}},
        "gateway.replicas is 2: replicas share their state in PostgreSQL",
    ),
    "replicas without Kafka": (
        {**TOKENS, "postgresql": {"existingSecret": "pg"}, "worldservice": {"replicas": 2}},
        "worldservice.replicas is 2: replicas share queues and the ControlBus on Kafka",
    ),
    "WorldService replicas on the HTTP ControlBus": (
        {**TOKENS, "postgresql": {"existingSecret": "pg"}, "kafka": {"brokers": "k:9092", "controlbus": False},
         "worldservice": {"replicas": 2}},
        "worldservice.replicas > 1 needs kafka.controlbus: true",
    ),
    "DAG Manager replicas without Prometheus": (
        {**TOKENS, "postgresql": {"existingSecret": "pg"}, "kafka": {"brokers": "k:9092"},
         "dagmanager": {"replicas": 2}},
        "dagmanager.replicas > 1 needs worldservice.prometheusUrl",
    ),
    "one DSN of three": (
        {**TOKENS, "postgresql": {"gatewayDsn": "postgresql://u@h/db"}},
        "postgresql: give all three of dagmanagerDsn, gatewayDsn and worldserviceDsn",
    ),
    "unknown key": ({**TOKENS, "gateway": {"replica": 2}}, "gateway: Additional property replica is not allowed"),
    "wrong type": ({**TOKENS, "dagmanager": {"grpcPort": "50051"}}, "dagmanager.grpcPort: Invalid type"),
    "unknown qmtl.yml key": (
        {**TOKENS, "config": {"gateway": {"max_attempt": 3}}},
        "config.gateway: Additional property max_attempt is not allowed",
    ),
    "qmtl.yml value out of range": (
        {**TOKENS, "config": {"telemetry": {"sample_ratio": 2}}},
        "config.telemetry.sample_ratio: Must be less than or equal to 1",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_never_render(helm: str, tmp_path: Path, case: str) -> None:
    values, message = BAD_VALUES[case]
    result = render(helm, tmp_path, values=values)
    assert result.returncode != 0 and not result.stdout
    assert message in " ".join(result.stderr.split()), result.stderr


def test_schema_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "chart_schema.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_notes_say_how_to_reach_the_gateway(helm: str, tmp_path: Path) -> None:
    """NOTES.txt as `helm install` prints it, rendered by `helm template` (install needs a
    cluster) from a copy of the chart with one more template that renders the notes."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.txt")
    (chart / "templates" / "notes-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}}\n'
    )
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    result = subprocess.run(
        [helm, "template", "prod", str(chart), "--namespace", "trading", "-f", str(tokens),
         "--show-only", "templates/notes-test.yaml"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = yaml.safe_load(result.stdout)["data"]["notes"]
    assert "kubectl -n trading port-forward svc/prod-qmtl-gateway 8000:8000" in notes
    assert "http://prod-qmtl-gateway.trading.svc:8000" in notes
    assert "QMTL_SDK__GATEWAY_TOKEN" in notes and "state is lost with a pod" in notes
