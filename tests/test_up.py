"""`qmtl up` as the README runs it: everything starts, the status view shows it, and
Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qmtl.cli import main


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers signal 0; it holds no resources and will be reaped
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.integration
def test_up_runs_the_stack_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qmtl", "up", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    deadline = time.monotonic() + 180
    assert proc.stdout is not None
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "targets:" in line and "sdk=up" in line and "dagmanager=up" in line:
                break
        output = "".join(lines)
        assert "ready. State, config and logs" in output, output
        assert re.search(
            r"targets: dagmanager=up\s+gateway=up\s+sdk=up\s+worldservice=up", output
        ), output
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", output)]
        assert len(pids) == 6, output  # 3 services, demo, Prometheus, Alertmanager
        assert all(alive(pid) for pid in pids)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopped." in rest
    assert [pid for pid in pids if alive(pid)] == [], (
        "Ctrl-C must stop every process qmtl up started"
    )
    assert (state / "qmtl.yml").is_file() and (state / "rules" / "alert_rules.yml").is_file()


def test_up_rejects_unknown_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--with", "redis"]) == 2
    assert "--with accepts kafka,postgres" in capsys.readouterr().err


def test_up_refuses_a_foreign_state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory that is not ours is a usage error (exit 2), one line, nothing deleted."""
    (tmp_path / "precious.txt").write_text("not ours")
    assert main(["up", "--state-dir", str(tmp_path), "--no-prometheus"]) == 2
    err = capsys.readouterr().err
    assert "not a qmtl state directory; choose another --state-dir" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "precious.txt").exists()


def test_up_refuses_a_state_dir_whose_processes_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second `qmtl up` on a live state dir names the survivors and deletes nothing."""
    state = tmp_path / "state"
    state.mkdir()
    (state / ".qmtl-stack").write_text("")
    (state / "dagmanager.db").write_text("held by a running process")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (state / "pids.json").write_text(f'{{"dagmanager": {sleeper.pid}, "gateway": 999999}}')
        assert main(["up", "--state-dir", str(state), "--no-prometheus"]) == 1
        err = capsys.readouterr().err
        assert f"in use by a running stack: dagmanager (pid {sleeper.pid})" in err
        assert "gateway" not in err, "dead PIDs are not named"
        assert (state / "dagmanager.db").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
