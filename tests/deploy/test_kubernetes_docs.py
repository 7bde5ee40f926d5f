"""docs/kubernetes.md, command by command, without a cluster.

``kubectl create`` runs with ``--dry-run=client -o yaml``; ``helm upgrade --install``
runs as ``helm template`` with the same release, chart, namespace and values; what they
produce is validated (Kubernetes, Prometheus Operator) and checked against each other:
every Secret a pod reads exists with that key.  ``kubectl rollout status`` must name a
Deployment the chart rendered.  The scripts (``build_image.sh``, ``kube_smoke.sh``) are
run by ``test_kube_smoke.py``; the YAML example is validated and matches the PodMonitor.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from qmtl.monitoring.render import REPO_ROOT
from qmtl.testing import kube

PAGE = REPO_ROOT / "docs" / "kubernetes.md"
TOOLS = REPO_ROOT / ".tools"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(), re.S | re.M)


def commands() -> list[str]:
    return [line for block in blocks("bash") for line in block.splitlines() if line.strip()]


def sh(command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{TOOLS}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def template_of(command: str) -> tuple[str, list[dict[str, Any]]]:
    """``helm upgrade --install REL CHART ...`` rendered offline: (namespace, objects)."""
    argv = shlex.split(command)
    assert argv[:3] == ["helm", "upgrade", "--install"], command
    namespace = argv[argv.index("--namespace") + 1]
    result = sh(shlex.join(["helm", "template", *argv[3:]]))
    assert result.returncode == 0, (command, result.stderr)
    return namespace, [d for d in yaml.safe_load_all(result.stdout) if d]


def test_every_command_is_one_this_file_knows() -> None:
    known = ("kubectl -n qmtl create secret generic", "helm upgrade --install",
             "kubectl -n qmtl rollout status", "bash scripts/build_image.sh", "bash scripts/kube_smoke.sh")  # fmt: skip
    found = commands()
    assert len(found) == 9, found
    for command in found:
        assert command.startswith(known), command


def test_the_scripts_are_run_by_the_smoke_test() -> None:
    smoke_test = (REPO_ROOT / "tests" / "deploy" / "test_kube_smoke.py").read_text()
    assert '["bash", "scripts/kube_smoke.sh"]' in smoke_test
    assert "bash scripts/build_image.sh" in (REPO_ROOT / "scripts" / "kube_smoke.sh").read_text()


def test_the_documented_install_renders_valid_objects_reading_the_documented_secrets() -> None:
    secrets: dict[tuple[str, str], set[str]] = {}
    rendered: dict[str, list[dict[str, Any]]] = {}
    for command in commands():
        if " create secret " in command:
            result = sh(f"{command} --dry-run=client -o yaml")
            assert result.returncode == 0, (command, result.stderr)
            secret = yaml.safe_load(result.stdout)
            secrets[(secret["metadata"]["namespace"], secret["metadata"]["name"])] = set(
                secret["data"]
            )
        elif command.startswith("helm upgrade --install"):
            namespace, docs = template_of(command)
            for version in kube.KUBERNETES_VERSIONS:
                assert kube.validate_core(docs, version) == [], command
            assert kube.check_operator_objects(docs) == [], command
            rendered[namespace] = docs
            for deployment in (d for d in docs if d["kind"] == "Deployment"):
                for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in secrets.get((namespace, ref["name"]), set()), (
                            command,
                            ref,
                        )
        elif " rollout status " in command:
            name = command.rsplit("deployment/", 1)[1]
            deployments = {
                d["metadata"]["name"] for d in rendered["qmtl"] if d["kind"] == "Deployment"
            }
            assert name in deployments, (command, deployments)
    assert set(rendered) == {"qmtl", "monitoring"}
    assert [d["kind"] for d in rendered["monitoring"]].count("PrometheusRule") == 1


def test_the_upgrade_moves_the_dag_managers_first() -> None:
    upgrades = [c for c in commands() if c.startswith("helm upgrade") and "image.tag=0.2.0" in c]
    assert len(upgrades) == 2

    def images(command: str) -> dict[str, str]:
        _namespace, docs = template_of(command)
        return {
            d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
            for d in docs if d["kind"] == "Deployment"
        }  # fmt: skip

    assert images(upgrades[0]) == {
        "qmtl-dagmanager": "0.2.0",
        "qmtl-gateway": "0.1.0",
        "qmtl-worldservice": "0.1.0",
    }
    assert set(images(upgrades[1]).values()) == {"0.2.0"}


def test_the_strategy_example_is_valid_and_scraped_by_the_pod_monitor() -> None:
    (example,) = blocks("yaml")
    deployment = yaml.safe_load(example)
    for version in kube.KUBERNETES_VERSIONS:
        assert kube.validate_core([deployment], version) == []
    install = next(c for c in commands() if "deploy/helm/qmtl" in c)
    _namespace, docs = template_of(install)
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    pod = deployment["spec"]["template"]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in wanted.items())
    assert deployment["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    (container,) = pod["spec"]["containers"]
    port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    assert port in {p["name"] for p in container["ports"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["QMTL_SDK__HOST"]["value"] == "0.0.0.0"
    # The command is one the example accepts.
    from qmtl.examples.questdb_parallel_example import build_parser

    assert container["command"][:3] == ["python", "-m", "qmtl.examples.questdb_parallel_example"]
    args = build_parser().parse_args(container["command"][3:])
    assert args.metrics_port == next(
        p["containerPort"] for p in container["ports"] if p["name"] == port
    )


@pytest.mark.parametrize(
    "key", ["tokens.existingSecret", "postgresql.existingSecret", "serviceMonitor.labels"]
)
def test_the_production_values_set_what_the_page_says(key: str) -> None:
    values = yaml.safe_load((REPO_ROOT / "deploy/helm/qmtl/values-production.yaml").read_text())
    section, field = key.split(".")
    assert values[section][field]
    assert f"`{key}`" in PAGE.read_text() or key.split(".")[0] in PAGE.read_text()


def test_the_page_is_linked_from_the_readme() -> None:
    assert "`kubernetes.md`" in (REPO_ROOT / "README.md").read_text()
    assert Path(PAGE).is_file()
