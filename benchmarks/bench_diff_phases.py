"""Where a cold 20-node diff's time goes, phase by phase, over real gRPC.

The DAG Manager runs in this process (gRPC server on 127.0.0.1, wired as ``qmtl service
dagmanager server`` wires it, drills off) with a timer around each phase of the diff
path; a client in a child process sends distinct (cold) DAGs one after another, so no
two diffs overlap and the phases add up.  The client measures the round trip; what the
server's handler does not account for is gRPC on both ends, the loop's scheduling and
the loopback socket.

Backends: the embedded defaults (SQLite, in-process queues: the diff runs on the event
loop) and, unless ``--no-production``, PostgreSQL + Kafka (tansu; the diff runs in a
worker thread).  Each backend is measured twice in the same run: timers off (the plain
round trip) and on; the difference is what the timers cost.

    python benchmarks/bench_diff_phases.py [--diffs 400] [--nodes 20] [--no-production]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from _common import cpu_seconds, pct, save, table

from qmtl import devstack
from qmtl.foundation import eventloop
from qmtl.foundation.config import DagManagerConfig
from qmtl.foundation.contracts import SubmissionRequest
from qmtl.foundation.dag import chain_dag
from qmtl.services.dagmanager import diff as diff_module
from qmtl.services.dagmanager import grpc_service, metrics
from qmtl.services.dagmanager.client import DagManagerClient
from qmtl.services.dagmanager.grpc_service import DagManagerServicer, register
from qmtl.services.dagmanager.queues import open_queue_backend
from qmtl.services.dagmanager.service import tune_gc, wire
from qmtl.services.dagmanager.store import open_graph_store

#: Phase names in table order, with the phase each one is part of ("" = the round trip).
PHASES = {
    "handler": "",
    "authorize": "handler",
    "parse request": "handler",
    "proto to contract": "handler",
    "diff, as awaited": "handler",
    "diff": "diff, as awaited",
    "plan (parse, hash, name)": "diff",
    "store lookup": "diff",
    "queue creation": "diff",
    "store commit": "diff",
    "lock queues": "store commit",
    "bind": "store commit",
    "write diff": "store commit",
    "metrics": "diff",
    "encode reply": "handler",
}
#: What ``diff.guarded`` runs, by its ``what`` argument.
GUARDED = {
    "graph store lookup": "store lookup",
    "queue backend": "queue creation",
    "graph store commit": "store commit",
}


class PhaseTimers:
    """Wall time per phase, summed over the diffs measured while :attr:`on`."""

    def __init__(self) -> None:
        self.on = False
        self.ns: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if not self.on:
            yield
            return
        started = time.perf_counter_ns()
        try:
            yield
        finally:
            self.ns[name] += time.perf_counter_ns() - started

    def sync(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return fn(*args, **kwargs)

        return timed

    def coroutine(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return await fn(*args, **kwargs)

        return timed


def instrument(servicer: DagManagerServicer, timers: PhaseTimers) -> None:
    """Put a timer around each phase (before :func:`register`, which captures handlers)."""
    service = servicer.service
    servicer.DiffUnary = timers.coroutine("handler", servicer.DiffUnary)  # type: ignore[method-assign]
    servicer._authorize = timers.sync("authorize", servicer._authorize)  # type: ignore[method-assign]
    servicer._parse = timers.sync("parse request", servicer._parse)  # type: ignore[method-assign]
    servicer._diff = timers.coroutine("diff, as awaited", servicer._diff)  # type: ignore[method-assign]
    engine = service.engine
    engine.diff = timers.sync("diff", engine.diff)  # type: ignore[method-assign]
    engine._plan = timers.sync("plan (parse, hash, name)", engine._plan)  # type: ignore[method-assign]
    store = service.store
    store.lock_queues = timers.sync("lock queues", store.lock_queues)  # type: ignore[method-assign]
    store.bind = timers.sync("bind", store.bind)  # type: ignore[method-assign]
    store.write_diff = timers.sync("write diff", store.write_diff)  # type: ignore[method-assign]
    grpc_service.request_from_proto = timers.sync(  # type: ignore[attr-defined]
        "proto to contract", grpc_service.request_from_proto
    )
    grpc_service.result_chunks = timers.sync("encode reply", grpc_service.result_chunks)  # type: ignore[attr-defined]
    metrics.observe_diff = timers.sync("metrics", metrics.observe_diff)
    guarded = diff_module.guarded

    def timed_guarded(breaker: Any, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        with timers.phase(GUARDED[what]):
            return guarded(breaker, what, fn, *args)

    diff_module.guarded = timed_guarded  # type: ignore[assignment]


def client_main(target: str, diffs: int, nodes: int, salt: str, out: Path) -> None:
    """The child process: ``diffs`` cold diffs in a row; round trips and CPU to ``out``."""

    async def run() -> dict[str, Any]:
        client = DagManagerClient(target, timeout=60)
        dags = [chain_dag(nodes, salt=f"{salt}-{i}") for i in range(diffs)]
        samples = []
        cpu = time.process_time()
        for i, dag in enumerate(dags):
            started = time.perf_counter()
            await client.diff(SubmissionRequest(f"phases-{salt}-{i}", dag))
            samples.append((time.perf_counter() - started) * 1e6)
        cpu = time.process_time() - cpu
        await client.close()
        return {"samples_us": samples, "client_cpu_us": cpu / diffs * 1e6}

    out.write_text(json.dumps(eventloop.run(run())))


def drive(
    target: str, diffs: int, nodes: int, salt: str, workdir: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the client process; its results will be in the returned file."""
    out = workdir / f"client-{salt}.json"
    child = subprocess.Popen(
        [sys.executable, __file__, "--client", target, "--diffs", str(diffs),
         "--nodes", str(nodes), "--salt", salt, "--out", str(out)],
    )  # fmt: skip
    return child, out


async def measure(
    store_spec: str, queue_kind: str, brokers: str, diffs: int, nodes: int, workdir: Path
) -> dict[str, Any]:
    config = DagManagerConfig(graph_store=store_spec, queue_backend=queue_kind)
    store = open_graph_store(store_spec)
    queues = open_queue_backend(queue_kind, brokers, timeout=config.kafka_timeout_seconds)
    service = wire(config, store, queues, drills=False)
    servicer = DagManagerServicer(service)
    timers = PhaseTimers()
    instrument(servicer, timers)
    server = devstack.free_port()
    grpc_server = grpc.aio.server()
    register(servicer, grpc_server)
    grpc_server.add_insecure_port(f"127.0.0.1:{server}")
    await grpc_server.start()
    service.start()
    target = f"127.0.0.1:{server}"
    runs: dict[str, Any] = {}
    half = max(1, diffs // 2)
    # Off and on alternate, so a store that grows (and a broker that slows as topics
    # accumulate) weighs on both alike.
    plan = [("warm-up", max(50, diffs // 4))] + [("timers off", half), ("timers on", half)] * 2
    try:
        for label, count in plan:
            timers.on = label == "timers on"
            salt = f"{label.replace(' ', '')}-{time.time()}"
            child, out = drive(target, count, nodes, salt, workdir)
            cpu = cpu_seconds([os.getpid()])
            while child.poll() is None:  # the loop keeps serving the client meanwhile
                await asyncio.sleep(0.05)
            cpu = cpu_seconds([os.getpid()]) - cpu
            if child.returncode != 0:
                raise SystemExit(f"the client failed ({label}); see its output above")
            result = json.loads(out.read_text())
            run = runs.setdefault(label, {"samples_us": [], "server_cpu_s": 0.0,
                                          "client_cpu_s": 0.0})  # fmt: skip
            run["samples_us"] += result["samples_us"]
            run["server_cpu_s"] += cpu
            run["client_cpu_s"] += result["client_cpu_us"] * count / 1e6
        for run in runs.values():
            count = len(run["samples_us"])
            run["server_cpu_us"] = run.pop("server_cpu_s") / count * 1e6
            run["client_cpu_us"] = run.pop("client_cpu_s") / count * 1e6
        measured = len(runs["timers on"]["samples_us"])
        runs["timers on"]["phases_us"] = {n: ns / measured / 1000 for n, ns in timers.ns.items()}
    finally:
        timers.on = False
        await grpc_server.stop(grace=1)
        await service.stop()
    return runs


#: Rows for what a phase's timed parts leave over: (label, phase, its parent).
REST = {
    "diff, as awaited": "hand-off to a thread, or the inline check (rest)",
    "store commit": "begin + commit (rest)",
    "diff": "checks, result, breakers (rest)",
    "handler": "span, metadata, scheduling (rest)",
}


def rows_for(backend: str, runs: dict[str, Any]) -> list[list[object]]:
    off, on = runs["timers off"], runs["timers on"]
    round_trip = sum(on["samples_us"]) / len(on["samples_us"])
    phases = dict(on["phases_us"])
    parents = dict(PHASES)
    order = list(PHASES)

    def descends(name: str, phase: str) -> bool:
        while name:
            name = parents[name]
            if name == phase:
                return True
        return False

    for phase, label in REST.items():  # a phase's rest follows the last of its parts
        parts = sum(phases.get(p, 0.0) for p, up in PHASES.items() if up == phase)
        phases[label], parents[label] = phases.get(phase, 0.0) - parts, phase
        last = max(i for i, name in enumerate(order) if descends(name, phase))
        order.insert(last + 1, label)
    rows: list[list[object]] = [[backend, "round trip (client, mean)", "", round_trip, 1.0]]
    for name in order:
        if name in phases:
            part_of = parents[name] or "round trip"
            rows.append([backend, name, part_of, phases[name], phases[name] / round_trip])
    grpc = round_trip - phases.get("handler", 0.0)
    rows += [
        [backend, "gRPC both ends + loopback", "round trip", grpc, grpc / round_trip],
        [backend, "round trip p50 ms, timers off / on", "",
         f"{pct(off['samples_us'], 0.5) / 1000:,.2f} / {pct(on['samples_us'], 0.5) / 1000:,.2f}",
         ""],
        [backend, "CPU ms per diff, timers off: DAG Manager process / client", "",
         f"{off['server_cpu_us'] / 1000:,.2f} / {off['client_cpu_us'] / 1000:,.2f}", ""],
    ]  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffs", type=int, default=400, help="measured diffs per run")
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--no-production", action="store_true", help="skip PostgreSQL + Kafka")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--salt", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if args.client:
        client_main(args.client, args.diffs, args.nodes, args.salt, Path(args.out))
        return
    tune_gc()  # as the server does
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results["sqlite + in-process"] = eventloop.run(
            measure(f"sqlite:{work / 'graph.db'}", "inprocess", "", args.diffs, args.nodes, work)
        )
        if not args.no_production:
            pg = devstack.start_postgres()
            kafka = devstack.start_kafka(work)
            try:
                dsn = pg.new_database("phases")
                run = measure(dsn, "kafka", kafka.bootstrap, args.diffs, args.nodes, work)
                results["postgresql + kafka"] = eventloop.run(run)
            finally:
                kafka.stop()
                pg.stop()
    rows = [row for backend, runs in results.items() for row in rows_for(backend, runs)]
    markdown = (
        f"### Cold {args.nodes}-node diff over gRPC, phase by phase "
        f"(mean µs per diff, {args.diffs} sequential diffs)\n\n"
    ) + table(["backend", "phase", "part of", "µs per diff", "share of round trip"], rows)
    save("diff_phases", markdown, results)


if __name__ == "__main__":
    main()
