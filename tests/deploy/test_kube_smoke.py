"""The Kubernetes smoke from a clean slate: it passes, and leaves no pod, network,
secret or image behind (scripts/kube_smoke.sh; the checks are in scripts/kube_smoke.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from qmtl.monitoring.render import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _podman_state(env: dict[str, str]) -> dict[str, list[str]]:
    def ids(*args: str) -> list[str]:
        run = subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=env, timeout=60, check=True
        )
        return sorted(run.stdout.split())

    return {
        "pods": ids("pod", "ls", "--quiet"),
        "containers": ids("ps", "--all", "--quiet"),
        "networks": ids("network", "ls", "--quiet"),
        "secrets": ids("secret", "ls", "--quiet"),
        "images": ids("images", "--quiet", "--no-trunc"),
    }


@pytest.mark.timeout(1200)
def test_kube_smoke_passes_and_removes_what_it_made() -> None:
    env = dict(os.environ)
    conf = subprocess.run(
        ["bash", "-c", "source scripts/podman_env.sh && echo $CONTAINERS_CONF"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    env["CONTAINERS_CONF"] = conf.stdout.strip()
    before = _podman_state(env)
    run = subprocess.run(
        ["bash", "scripts/kube_smoke.sh"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=1100, check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "every ServiceMonitor target" not in output  # no timeout message
    for line in (
        "3 pods healthy", "strategy submitted through the Gateway: 4 queues",
        "Prometheus scrapes qmtl-dagmanager, qmtl-gateway, qmtl-worldservice: all up",
        "nothing firing but the Watchdog", "DagManagerUnresponsive reached Alertmanager",
        "QmtlServiceDown reached Alertmanager", "everything removed",
    ):  # fmt: skip
        assert line in output, (line, output[-3000:])
    assert _podman_state(env) == before
