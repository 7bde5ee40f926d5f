"""The QuestDB demo as a user runs it: a subprocess, QuestDB over ILP/HTTP, live /metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qmtl import devstack
from qmtl.testing.metrics import scrape
from qmtl.testing.receivers import IlpReceiver

pytestmark = pytest.mark.integration


def run_demo(tmp_path: Path, *args: str) -> tuple[devstack.ManagedProcess, int]:
    port = devstack.free_port()
    proc = devstack.ManagedProcess(
        "questdb-demo",
        [
            sys.executable,
            "-m",
            "qmtl.examples.questdb_parallel_example",
            "--metrics-port",
            str(port),
            *args,
        ],
        log_path=tmp_path / "demo.log",
    )
    return proc, port


def test_demo_persists_every_payload_and_is_observable(tmp_path: Path) -> None:
    events = 400
    with IlpReceiver() as rx:
        proc, port = run_demo(
            tmp_path, "--questdb", rx.conf, "--events", str(events), "--rate", "200"
        )
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            proc.wait_ready(lambda: devstack.http_ok(url), timeout=30)
            during = devstack.wait_for(
                lambda: (s := scrape(url)).series("node_processed_total") and s,
                timeout=30,
                what="node metrics",
            )
            assert proc.alive(), "the demo must still be running while /metrics answers"
            assert sum(during.series("node_processed_total").values()) > 0
            assert proc.popen.wait(timeout=120) == 0
        finally:
            proc.stop()
        rows = rx.wait_for_rows(2 * events, timeout=10)
    assert len(rows) == 2 * events
    assert {r.table for r in rows} == {"btc_price", "eth_price"}
    log = proc.log_tail(30)
    assert f"recorded {2 * events} of {2 * events} StreamInput payloads to questdb" in log
    assert "node_processed_total" in log and "event_recorder_errors_total 0" in log


def test_demo_without_questdb_finishes_and_counts_errors(tmp_path: Path) -> None:
    dead = devstack.free_port()
    proc, _ = run_demo(
        tmp_path, "--questdb", f"http::addr=127.0.0.1:{dead};", "--events", "50", "--rate", "0"
    )
    try:
        assert proc.popen.wait(timeout=120) == 0
    finally:
        proc.stop()
    log = proc.log_tail(30)
    assert "WARNING: 100 payloads were not persisted" in log
    assert "event_recorder_errors_total 100" in log


def test_demo_port_in_use_exits_2(tmp_path: Path) -> None:
    with IlpReceiver() as rx:
        result = subprocess.run(
            [sys.executable, "-m", "qmtl.examples.questdb_parallel_example", "--metrics-port", str(rx.port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2 and "already in use" in result.stderr


def test_defaults_stay_scrapeable_and_ctrl_c_ends_with_a_summary(tmp_path: Path) -> None:
    """With its defaults the demo runs about a minute (it used to end in ~3 s): a user
    following the README can watch /metrics; Ctrl-C stops early and still prints the summary."""
    import signal
    import time

    with IlpReceiver() as rx:
        proc, port = run_demo(tmp_path, "--questdb", rx.conf)
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            proc.wait_ready(lambda: devstack.http_ok(url), timeout=60)
            first = sum(scrape(url).series("node_processed_total").values())
            started = time.monotonic()
            devstack.wait_for(
                lambda: time.monotonic() - started > 5 and sum(scrape(url).series("node_processed_total").values()) > first,
                timeout=30, what="the demo to keep processing for more than 5 s",
            )  # fmt: skip
            assert proc.alive(), "the default run lasts about 60 s"
            assert proc.log_tail(5).splitlines()[0].startswith("metrics: http://127.0.0.1:")
            proc.signal(signal.SIGINT)
            assert proc.popen.wait(timeout=30) == 0
        finally:
            proc.stop()
    log = proc.log_tail(40)
    assert "stopping early (Ctrl-C)" in log and "aggregated metrics:" in log


def test_the_summary_shows_the_runs_real_totals(tmp_path: Path) -> None:
    """The report: after 160 real failures the summary printed node_processed_total 0 and
    node_process_failure_total 0 (the finished strategies' series were already gone)."""
    import re

    done = subprocess.run(
        [sys.executable, "-m", "qmtl.examples.questdb_parallel_example", "--events", "200",
         "--rate", "0", "--fail-every", "2", "--recorder", f"sqlite:{tmp_path / 'events.db'}",
         "--metrics-port", str(devstack.free_port())],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    per_strategy = re.findall(r"(\d+) node executions, (\d+) failures", done.stdout)
    assert len(per_strategy) == 2
    processed = sum(int(p) for p, _ in per_strategy)
    failed = sum(int(f) for _, f in per_strategy)
    assert failed > 100
    assert f"node_processed_total {processed}" in done.stdout, done.stdout
    assert f"node_process_failure_total {failed}" in done.stdout, done.stdout
