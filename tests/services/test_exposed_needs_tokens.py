"""A service bound beyond loopback without the tokens its endpoints need does not start.

Started anyway it would look healthy while refusing every admin call (and, for the
Gateway, every submission); the chart relies on this to never run such a pod.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from qmtl import devstack
from qmtl.devstack.components import start_service

#: service -> (port key, store key, the tokens it needs, a call those tokens guard)
SERVICES = {
    "gateway": ("port", "submission_log", ("admin_token", "submit_token"), "/strategies"),
    "worldservice": ("port", "store", ("admin_token",), "/worlds"),
    "dagmanager": ("http_port", "graph_store", ("admin_token",), "/admin/gc-trigger"),
}


def _config(tmp_path: Path, service: str, tokens: dict[str, str]) -> tuple[Path, int]:
    port_key, store_key, _, _ = SERVICES[service]
    port = devstack.free_port()
    section = {
        "host": "0.0.0.0",
        port_key: port,
        store_key: f"sqlite:{tmp_path}/{service}.db",
        **tokens,
    }
    if service == "dagmanager":
        section["grpc_port"] = devstack.free_port()
    path = tmp_path / "qmtl.yml"
    path.write_text(yaml.safe_dump({service: section}))
    return path, port


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.parametrize("given", ["none", "some"])
def test_exposed_without_its_tokens_exits_2_and_creates_nothing(
    tmp_path: Path, service: str, given: str
) -> None:
    needed = SERVICES[service][2]
    tokens = {needed[0]: "t0k"} if given == "some" and len(needed) > 1 else {}
    missing = [key for key in needed if key not in tokens]
    config, _port = _config(tmp_path, service, tokens)
    result = subprocess.run(
        [sys.executable, "-m", "qmtl", "service", service, "server", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "listens beyond loopback" in line and "bind 127.0.0.1" in line, line
    for key in missing:
        assert f"{service}.{key}" in line, line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / f"{service}.db").exists()


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_exposed_with_its_tokens_starts_and_guards_admin(tmp_path: Path, service: str) -> None:
    tokens = {key: f"{key}-value" for key in SERVICES[service][2]}
    config, port = _config(tmp_path, service, tokens)
    handle = start_service(
        service, config, health_url=f"http://127.0.0.1:{port}/health", workdir=tmp_path
    )
    try:
        # Healthy, and a guarded call without its token is refused (not disabled).
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        refused = httpx.post(f"http://127.0.0.1:{port}{SERVICES[service][3]}", json={}, timeout=5)
        assert refused.status_code == 401, refused.text
    finally:
        handle.stop()
