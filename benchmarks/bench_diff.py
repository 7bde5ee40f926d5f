"""Diff latency vs DAG size, cold (all nodes new) and warm (identical re-submission).

Backends: SQLite and PostgreSQL graph stores, in-process (engine called directly) and
over real gRPC (server subprocess, SQLite).  The ratio column is the cost per node
relative to the 100-node case of the same row kind, measured in the same run:
~1.0 everywhere means cost grows linearly with N.

    python benchmarks/bench_diff.py [--sizes 10,100,1000,10000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from _common import pct, save, table

from qmtl import devstack
from qmtl.foundation.config import DagManagerConfig
from qmtl.foundation.contracts import SubmissionRequest
from qmtl.foundation.dag import chain_dag
from qmtl.services.dagmanager.client import DagManagerClient
from qmtl.services.dagmanager.queues import InProcessQueues
from qmtl.services.dagmanager.service import DagManagerService, tune_gc
from qmtl.services.dagmanager.store import open_graph_store

TARGETS = {  # (backend, kind, N) -> p95 target in ms (issue #16; warm as in the DAG Manager issue)
    ("sqlite in-process", "cold", 1000): 15, ("sqlite in-process", "cold", 10000): 150,
    ("sqlite in-process", "warm", 100): 2, ("sqlite in-process", "warm", 1000): 20,
    ("sqlite in-process", "warm", 10000): 250, ("postgresql in-process", "cold", 1000): 40,
}  # fmt: skip


def reps(n: int) -> int:
    return {10: 30, 100: 30, 1000: 15, 10000: 6}.get(n, 5)


def run_inprocess(spec: str, sizes: list[int]) -> list[dict]:
    service = DagManagerService(
        DagManagerConfig(), store=open_graph_store(spec), queues=InProcessQueues()
    )
    rows = []
    for n in sizes:
        for kind in ("cold", "warm"):
            samples = []
            warm_dag = chain_dag(n, salt=f"warm-{n}-{time.time()}")
            if kind == "warm":
                service.engine.diff(SubmissionRequest("bench", warm_dag))
            for i in range(reps(n)):
                dag = (
                    chain_dag(n, salt=f"cold-{n}-{i}-{time.time()}") if kind == "cold" else warm_dag
                )
                started = time.perf_counter()
                service.engine.diff(
                    SubmissionRequest(f"bench-{n}-{i}" if kind == "cold" else "bench", dag)
                )
                samples.append((time.perf_counter() - started) * 1000)
            rows.append({"kind": kind, "n": n, "samples": samples})
    service.store.close()
    return rows


def run_grpc(sizes: list[int], workdir: Path) -> list[dict]:
    import yaml

    http, grpc_port = devstack.free_port(), devstack.free_port()
    config = workdir / "qmtl.yml"
    config.write_text(yaml.safe_dump({"dagmanager": {
        "http_port": http, "grpc_port": grpc_port, "graph_store": f"sqlite:{workdir / 'grpc.db'}",
        "gc_interval_seconds": 3600,
    }}))  # fmt: skip
    server = devstack.start_service(
        "dagmanager", config, health_url=f"http://127.0.0.1:{http}/health", workdir=workdir
    )

    async def measure() -> list[dict]:
        client = DagManagerClient(f"127.0.0.1:{grpc_port}", timeout=120)
        rows = []
        for n in sizes:
            for kind in ("cold", "warm"):
                warm_dag = chain_dag(n, salt=f"gw-{n}")
                if kind == "warm":
                    await client.diff(SubmissionRequest("bench", warm_dag))
                samples = []
                for i in range(reps(n)):
                    dag = chain_dag(n, salt=f"gc-{n}-{i}") if kind == "cold" else warm_dag
                    started = time.perf_counter()
                    await client.diff(
                        SubmissionRequest(f"b{n}-{i}" if kind == "cold" else "bench", dag)
                    )
                    samples.append((time.perf_counter() - started) * 1000)
                rows.append({"kind": kind, "n": n, "samples": samples})
        await client.close()
        return rows

    try:
        return asyncio.run(measure())
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    logging.disable(logging.WARNING)
    tune_gc()  # as the server does
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results["sqlite in-process"] = run_inprocess(f"sqlite:{work / 'bench.db'}", sizes)
        if not args.no_postgres:
            pg = devstack.start_postgres()
            try:
                results["postgresql in-process"] = run_inprocess(pg.dsn, sizes)
            finally:
                pg.stop()
        results["sqlite over gRPC"] = run_grpc(sizes, work)

    rows = []
    for backend, measured in results.items():
        base = {r["kind"]: pct(r["samples"], 0.5) / r["n"] for r in measured if r["n"] == 100}
        for r in measured:
            p50, p95 = pct(r["samples"], 0.5), pct(r["samples"], 0.95)
            target = TARGETS.get((backend, r["kind"], r["n"]))
            per_node = p50 / r["n"]
            ratio = per_node / base[r["kind"]] if r["kind"] in base else float("nan")
            verdict = "" if target is None else ("ok" if p95 <= target else "OVER")
            rows.append([backend, r["kind"], r["n"], len(r["samples"]), p50, p95, per_node * 1000, ratio,
                         "" if target is None else target, verdict])  # fmt: skip
    markdown = "### Diff latency (ms)\n\n" + table(
        ["backend", "kind", "nodes", "runs", "p50 ms", "p95 ms", "us/node (p50)",
         "per-node ratio vs 100", "target p95 ms", "verdict"], rows,
    )  # fmt: skip
    save(
        "diff",
        markdown,
        {k: [{**r, "samples": r["samples"]} for r in v] for k, v in results.items()},
    )


if __name__ == "__main__":
    main()
