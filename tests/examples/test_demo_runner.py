"""The `qmtl up` demo workload stops when told, even while it is still starting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from qmtl import devstack

pytestmark = pytest.mark.integration


def test_sigterm_during_start_up_stops_at_once_instead_of_waiting_out_retries(
    tmp_path: Path,
) -> None:
    """Nothing listens where the Gateway and WorldService should be: the submission of
    the first strategy retries for about 6 s.  SIGTERM then must interrupt it (exit 0,
    no traceback), not let it and the next two strategies' retries run out first."""
    config = tmp_path / "qmtl.yml"
    config.write_text(yaml.safe_dump({
        "gateway": {"port": devstack.free_port()},
        "worldservice": {"port": devstack.free_port()},
        "sdk": {"admin_port": devstack.free_port()},
    }))  # fmt: skip
    proc = devstack.ManagedProcess(
        "demo",
        [sys.executable, "-m", "qmtl.examples.demo_runner", "--config", str(config)],
        log_path=tmp_path / "demo.log",
        cwd=tmp_path,
    )
    try:
        devstack.wait_for(
            lambda: "creating the world failed" in proc.log_tail(),
            timeout=60, what="the demo to start submitting", alive=proc.alive,
        )  # fmt: skip
        assert proc.alive()
    finally:
        code = proc.stop(timeout=30)
    log = proc.log_path.read_text()
    assert code == 0, log
    assert "Traceback" not in log and "submitting" not in log, log
