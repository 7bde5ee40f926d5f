"""`qmtl up` as the README runs it: everything starts, the status view shows it, and
Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qmtl import devstack
from qmtl.cli import main
from qmtl.devstack.status import (
    CLEAR,
    STATUS_QUERIES,
    StatusView,
    fit,
    job_health,
    summarise_alerts,
)
from qmtl.foundation.catalogue import PROMETHEUS_BUILTINS, metric_names
from qmtl.monitoring.promql import referenced_metrics
from tests.monitoring.test_rules import recording_rule_names


def alive(pid: int) -> bool:
    return devstack.alive(pid)


#: Sets SIGINT to ignored or default, then becomes ``python ARGS...``.
_EXEC_WITH_SIGINT = (
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[1] == 'ignore' else signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


class Up:
    """`qmtl up` as a subprocess whose output is read line by line."""

    def __init__(self, *args: str, cwd: Path | None = None, sigint: Any = signal.SIG_DFL) -> None:
        """``sigint``: the SIGINT disposition it starts with (a script's ``&`` job: SIG_IGN).

        Set by a small exec wrapper, not ``preexec_fn``: that runs Python in a forked
        child of a threaded worker (gRPC threads of earlier tests), where it once died
        before exec.  An ignored SIGINT survives exec, as it does from a shell.
        """
        mode = "ignore" if sigint == signal.SIG_IGN else "default"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _EXEC_WITH_SIGINT, mode, "-m", "qmtl", "up", *args], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def read_until(self, done: Callable[[str], bool], timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if done(line):
                return line
        raise AssertionError(f"qmtl up did not get there:\n{self.output[-4000:]}")

    def pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"\(pid (\d+)\)", self.output)]

    def stop(self, sig: int = signal.SIGINT) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rest, _ = self.proc.communicate(timeout=60)
        return rest or ""


def all_up(line: str) -> bool:
    return "targets:" in line and "sdk=up" in line and "dagmanager=up" in line


@pytest.mark.integration
def test_up_runs_the_stack_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = Up("--state-dir", str(state))
    try:
        up.read_until(all_up)
        assert "ready. State, config and logs" in up.output
        assert re.search(
            r"targets: dagmanager=up\s+gateway=up\s+prometheus=up\s+sdk=up\s+worldservice=up",
            up.output,
        ), up.output
        pids = up.pids()
        assert len(pids) == 6, up.output  # 3 services, demo, Prometheus, Alertmanager
        assert all(alive(pid) for pid in pids)
        # The command it prints, run exactly as printed.
        printed = re.search(r"ops +(qmtl ops cross-context show --config \S+)", up.output)
        assert printed, up.output
        ops = subprocess.run(
            [sys.executable, "-m", *shlex.split(printed.group(1))], capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert ops.returncode == 0, ops.stdout + ops.stderr
        assert "dagmanager: 0 unresolved" in ops.stdout and "promotions allowed" in ops.stdout
        # Every rate of the view becomes a number once Prometheus has two scrapes of it.
        up.read_until(lambda line: "rates:" in line and "=-" not in line, timeout=120)
    finally:
        rest = up.stop()
    assert up.proc.returncode == 0, rest
    assert "stopped." in rest
    assert [pid for pid in pids if alive(pid)] == [], (
        "Ctrl-C must stop every process qmtl up started"
    )
    assert (state / "qmtl.yml").is_file() and (state / "rules" / "alert_rules.yml").is_file()


@pytest.mark.integration
def test_sigkill_of_qmtl_up_takes_its_children_along(tmp_path: Path) -> None:
    """No atexit runs on SIGKILL: the children go by the parent-death signal."""
    state = tmp_path / "state"
    up = Up("--state-dir", str(state), "--no-prometheus")
    try:
        up.read_until(all_up)
        pids = up.pids()
        assert len(pids) == 4 and all(alive(p) for p in pids)
    finally:
        up.stop(signal.SIGKILL)
    devstack.wait_for(
        lambda: not [p for p in pids if alive(p)], timeout=30, what="the orphaned children to exit"
    )
    again = Up("--state-dir", str(state), "--no-prometheus", "--duration", "3")
    again.read_until(lambda line: "ready." in line)
    assert again.stop(signal.SIGINT) is not None and again.proc.returncode == 0


@pytest.mark.integration
def test_ctrl_c_stops_qmtl_up_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A script's background job starts with SIGINT ignored; Ctrl-C must still stop it all."""
    up = Up("--state-dir", str(tmp_path / "state"), "--no-prometheus", sigint=signal.SIG_IGN)
    try:
        up.read_until(all_up)
        pids = up.pids()
        assert len(pids) == 4 and all(alive(p) for p in pids), up.output
    finally:
        rest = up.stop(signal.SIGINT)
    assert up.proc.returncode == 0 and "stopped." in rest, rest
    assert [pid for pid in pids if alive(pid)] == []


@pytest.mark.integration
def test_status_view_redraws_in_place_on_a_terminal(tmp_path: Path) -> None:
    """On a TTY: one screen redrawn (clear + home), every line fitted to the width."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "qmtl", "up", "--no-prometheus", "--duration", "14",
         "--state-dir", str(tmp_path / "state")],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        env={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")},
    )  # fmt: skip
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        proc.wait(timeout=60)
        os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    screens = text.split(CLEAR)[1:]
    assert len(screens) >= 2, text[-2000:]
    assert "targets:" in screens[-1] and "Gateway" in screens[-1]
    for screen in screens:
        for line in screen.replace("\r", "").splitlines():
            if "stopped." in line or "stopping" in line:
                continue
            assert len(line) <= 60, repr(line)


def test_piped_status_view_prints_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    import io

    out = io.StringIO()
    view = StatusView(out, ["header"], lambda: ["targets: a=up", "alerts:  firing=none"], tty=False)
    view.update()
    view.update()
    assert CLEAR not in out.getvalue() and out.getvalue().count("targets: a=up") == 2
    tty = StatusView(io.StringIO(), ["  Gateway http://x"], lambda: ["y" * 500], tty=True).render()
    assert tty.startswith(CLEAR) and "…" in tty


def test_the_status_view_reads_only_series_that_exist() -> None:
    """A renamed recording rule left the view at "diffs/min=-" for ever, silently."""
    allowed = metric_names() | PROMETHEUS_BUILTINS | recording_rule_names()
    for label, expr in STATUS_QUERIES.items():
        assert referenced_metrics(expr) <= allowed, (label, referenced_metrics(expr) - allowed)


def test_a_target_not_scraped_yet_is_starting_not_down() -> None:
    assert job_health(["unknown"]) == "starting"
    assert job_health(["up"]) == "up"
    assert job_health(["down"]) == "DOWN"
    assert job_health(["up", "unknown"]) == "starting(1/2)"
    assert job_health(["up", "down"]) == "DOWN(1/2)"
    assert job_health(["down", "unknown"]) == "DOWN(0/2)"


def test_repeated_alerts_are_summarised() -> None:
    assert summarise_alerts(["B", "A", "B", "B"]) == "A, B x3"
    assert summarise_alerts([]) == "none"
    assert fit("abcdef", 4) == "abc…" and fit("abc", 4) == "abc"


@pytest.mark.integration
def test_up_with_kafka_and_postgres_is_healthy(tmp_path: Path) -> None:
    """The production backends through the CLI: every target up, and no alert pending or
    firing once the demo's apply ran (it used to fail for want of a subscribed Gateway)."""
    up = Up("--state-dir", str(tmp_path / "state"), "--with", "kafka,postgres")
    try:
        up.read_until(
            lambda line: "apply runs=1.0" in line or "apply runs=2.0" in line, timeout=240
        )
        # Until Prometheus has scraped every job once, QmtlJobAbsent is pending (its 5m
        # `for` keeps it from firing); from then on nothing may be pending or firing.
        up.read_until(lambda line: "alerts:" in line and "pending=none" in line, timeout=60)
        healthy_blocks = 0
        while healthy_blocks < 6:  # 30 s of status after the apply
            line = up.read_until(lambda line: "alerts:" in line, timeout=60)
            assert "firing=none" in line and "pending=none" in line, up.output[-3000:]
            assert "watchdog=ok" in line, line
            healthy_blocks += 1
        targets = [line for line in up.lines if "targets:" in line][-1]
        assert "DOWN" not in targets and "dagmanager=up" in targets, targets
    finally:
        up.stop()
    assert up.proc.returncode == 0


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


@pytest.mark.integration
def test_up_ha_runs_two_prometheus_and_two_clustered_alertmanagers(tmp_path: Path) -> None:
    """`qmtl up --ha`: both Prometheus replicas scrape everything and load the same rules,
    the Alertmanager peers form one cluster, and Ctrl-C stops all of them."""
    import httpx

    up = Up("--state-dir", str(tmp_path / "state"), "--ha")
    try:
        up.read_until(all_up)
        assert "starting Prometheus and Alertmanager (HA pairs)" in up.output
        prometheus = re.findall(r"Prometheus \(([ab])\) +(http://\S+)/alerts", up.output)
        alertmanagers = re.findall(r"Alertmanager \(([ab])\) (http://\S+)", up.output)
        assert [r for r, _ in prometheus] == ["a", "b"], up.output
        assert [p for p, _ in alertmanagers] == ["a", "b"], up.output
        pids = up.pids()
        # 3 services, demo, 2 Prometheus, 2 Alertmanagers, VictoriaMetrics
        assert len(pids) == 9, up.output
        store = re.search(r"Long-term +(http://\S+)/vmui", up.output)
        assert store, up.output
        devstack.wait_for(
            lambda: httpx.get(f"{store.group(1)}/api/v1/query", params={"query": "up"},
                              timeout=10).json()["data"]["result"],
            timeout=60, what="remote writes reaching VictoriaMetrics",
        )  # fmt: skip
        for replica, url in prometheus:
            devstack.wait_for(
                lambda url=url: len(httpx.get(f"{url}/api/v1/query", params={"query": 'up{job=~"qmtl-.*"} == 1'},
                                              timeout=10).json()["data"]["result"]) == 4,
                timeout=60, what=f"Prometheus {replica} scraping all four processes",
            )  # fmt: skip
            config = httpx.get(f"{url}/api/v1/status/config", timeout=10).json()["data"]["yaml"]
            assert f"replica: {replica}" in config
            assert "labeldrop" in config
        for _peer, url in alertmanagers:
            status = httpx.get(f"{url}/api/v2/status", timeout=10).json()
            assert len(status["cluster"]["peers"]) == 2, status["cluster"]
    finally:
        rest = up.stop()
    assert up.proc.returncode == 0, rest
    assert [pid for pid in pids if alive(pid)] == []


@pytest.mark.integration
def test_up_with_replicas_behind_haproxy(tmp_path: Path) -> None:
    """`qmtl up --replicas 2 --with kafka,postgres`: every replica named and scraped as its
    own target, the Gateway URL is the balancer, and a burst survives SIGKILL of a replica."""
    import httpx

    from qmtl.foundation.dag import chain_dag

    up = Up("--state-dir", str(tmp_path / "state"), "--replicas", "2", "--with", "kafka,postgres",
            "--duration", "240")  # fmt: skip
    try:
        up.read_until(
            lambda line: "gateway=up(2/2)" in line and "dagmanager=up(2/2)" in line, timeout=240
        )
        for label in ("DAG Manager replica 1", "DAG Manager replica 2", "Gateway replica 1",
                      "Gateway replica 2", "WorldService replica 2", "HAProxy"):  # fmt: skip
            assert f"starting {label}" in up.output, label
        gateway = re.search(
            r"Gateway +(http://\S+)/status +\(2 replicas behind HAProxy\)", up.output
        )
        assert gateway, up.output
        prometheus = re.search(r"Prometheus +(http://\S+)/alerts", up.output)
        assert prometheus
        counts = httpx.get(f"{prometheus.group(1)}/api/v1/query",
                           params={"query": "count by (job) (up == 1)"}, timeout=10).json()  # fmt: skip
        per_job = {r["metric"]["job"]: int(r["value"][1]) for r in counts["data"]["result"]}
        assert (
            per_job["qmtl-gateway"]
            == per_job["qmtl-dagmanager"]
            == per_job["qmtl-worldservice"]
            == 2
        )
        replica_pid = int(
            re.search(r"starting Gateway replica 1 \.\.\. \S+ \(pid (\d+)\)", up.output).group(1)
        )
        codes = []
        with httpx.Client(timeout=30) as client:
            for i in range(60):
                if i == 20:
                    os.kill(replica_pid, signal.SIGKILL)
                body = {"dag": json.loads(chain_dag(2, salt=f"burst{i}"))}
                for _attempt in range(20):  # retry the same body on retryable answers
                    try:
                        response = client.post(f"{gateway.group(1)}/strategies", json=body)
                    except httpx.TransportError:
                        continue
                    if response.status_code in (200, 202):
                        codes.append(response.status_code)
                        break
        assert len(codes) == 60, codes
        up.read_until(lambda line: "gateway-1 exited" in line, timeout=30)
        up.read_until(lambda line: "gateway=DOWN(1/2)" in line, timeout=30)
    finally:
        up.stop()
    assert up.proc.returncode == 0, "a dead replica is reported, its peers serve on"
