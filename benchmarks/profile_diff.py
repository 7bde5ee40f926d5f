"""Where the DAG Manager's time goes on cold 20-node diffs: a sampling profile by phase.

A local stack on embedded defaults (SQLite, in-process queues; ``--with-backends``:
PostgreSQL and Kafka) takes cold submissions from 8 keep-alive clients (the load of
``bench_gateway.py``) while ``py-spy`` samples the DAG Manager process, every thread,
idle frames left out.  Each sample is put in the first phase whose pattern matches a
frame of its stack, innermost first; the table gives each phase's share of the
samples and its milliseconds of DAG Manager CPU per diff (the process's own CPU time,
measured from /proc, shared out by those shares).

    python benchmarks/profile_diff.py [--requests 2000] [--with-backends]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import cpu_seconds, save, table
from bench_gateway import load

from qmtl import devstack
from qmtl.devstack.stack import LocalStack

#: (phase, pattern over "function (file)" of a frame); innermost matching frame wins.
PHASES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("SQL: commit", r"\bcommit\b"),
        ("SQL: statements", r"sqlite3|psycopg|execute|fetch"),
        ("queue creation (Kafka admin / in-process)", r"queues\.py|confluent_kafka|admin"),
        ("metrics", r"prometheus_client|qmtl/foundation/metrics\.py|dagmanager/metrics\.py"),
        ("tracing", r"opentelemetry|qmtl/foundation/tracing\.py"),
        ("protobuf encode/decode", r"proto_codec|_pb2|SerializeToString|FromString|protobuf"),
        ("DAG parse and validation", r"foundation/dag\.py|json/decoder|strictjson"),
        ("diff planning", r"dagmanager/diff\.py|dagmanager/store\.py"),
        ("gRPC server (aio, Cython)", r"grpc"),
        (
            "thread hand-offs (executor, futures)",
            r"concurrent/futures|threading\.py|to_thread|queue\.py",
        ),
        ("event loop", r"asyncio|uvloop"),
    ]
]


def phase_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):  # innermost first
        for name, pattern in PHASES:
            if pattern.search(frame):
                return name
    return "other"


def start_profiler(pid: int, out: Path) -> subprocess.Popen[str]:
    """py-spy sampling ``pid`` until interrupted; returns once it is attached."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--threads",
         "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert spy.stderr is not None
    for line in spy.stderr:  # "Sampling process ..." once attached
        if "Sampling" in line:
            return spy
    raise RuntimeError(f"py-spy did not attach to {pid} (exit {spy.wait()})")


def phases_of(out: Path) -> Counter[str]:
    """Collapsed stacks (``frame;frame;... count``) counted by phase."""
    phases: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            phases[phase_of(stack)] += int(count)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--with-backends", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        backends: dict[str, str] = {}
        postgres = kafka = None
        if args.with_backends:
            postgres, kafka = devstack.start_postgres(), devstack.start_kafka(Path(tmp) / "kafka")
            backends = {"kafka": kafka.bootstrap, "postgres_dsn": postgres.dsn}
        try:
            with LocalStack(Path(tmp) / "stack", drills=False, **backends) as stack:  # type: ignore[arg-type]
                port = int(stack.url("gateway").rsplit(":", 1)[1])
                dm = stack.pids()["dagmanager"]
                asyncio.run(load(port, 4, 40, "warmup"))
                out = Path(tmp) / "dm.raw"
                spy = start_profiler(dm, out)
                cpu_before = cpu_seconds([dm])
                started = time.perf_counter()
                latencies, _tput, _cpu = asyncio.run(load(port, 8, args.requests, "profile"))
                seconds = time.perf_counter() - started
                cpu_ms = (cpu_seconds([dm]) - cpu_before) * 1000
                spy.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
                spy.wait(60)
                phases = phases_of(out)
                n = len(latencies)
        finally:
            if kafka is not None:
                kafka.stop()
            if postgres is not None:
                postgres.stop()
    total = sum(phases.values()) or 1
    per_diff = cpu_ms / max(1, n)
    rows = [
        [name, count, 100.0 * count / total, per_diff * count / total]
        for name, count in phases.most_common()
    ]
    rows.append(["all (DAG Manager CPU per diff)", total, 100.0, per_diff])
    label = (
        "PostgreSQL + Kafka"
        if args.with_backends
        else "embedded defaults (SQLite, in-process queues)"
    )
    markdown = (
        f"### DAG Manager time per cold 20-node diff, {label}\n\n"
        f"{n} submissions from 8 clients in {seconds:.1f} s "
        f"({n / seconds:.0f}/s); py-spy samples of every DAG Manager thread "
        "while busy, by innermost matching phase.\n\n"
        + table(["phase", "samples", "% of samples", "ms of CPU per diff"], rows)
    )
    save("profile_diff_backends" if args.with_backends else "profile_diff", markdown, rows)


if __name__ == "__main__":
    main()
