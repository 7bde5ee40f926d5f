"""Diff latency vs DAG size, cold (all nodes new) and warm (identical re-submission).

Backends: SQLite and PostgreSQL graph stores, in-process (engine called directly) and
over real gRPC (server subprocess, SQLite).  The ratio column is the cost per node
relative to the 100-node case of the same row kind, measured in the same run:
~1.0 everywhere means cost grows linearly with N.

``--against REV`` instead measures cold in-process diffs of this checkout and of git
revision ``REV`` (exported to a temporary tree), alternating child processes for
``--rounds`` rounds on fresh stores, and prints both with their ratio: on a shared
machine whose speed drifts by tens of percent, a same-run comparison with the code an
issue was measured on is the figure to judge a relative target by.

    python benchmarks/bench_diff.py [--sizes 10,100,1000,10000] [--no-postgres]
    python benchmarks/bench_diff.py --against REV [--sizes 1000,10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, pct, save, table

from qmtl import devstack
from qmtl.foundation.config import DagManagerConfig
from qmtl.foundation.contracts import SubmissionRequest
from qmtl.foundation.dag import chain_dag
from qmtl.services.dagmanager.client import DagManagerClient
from qmtl.services.dagmanager.queues import InProcessQueues
from qmtl.services.dagmanager.service import DagManagerService, tune_gc
from qmtl.services.dagmanager.store import open_graph_store

TARGETS = {  # (backend, kind, N) -> p95 target in ms (the agreed performance targets)
    ("sqlite in-process", "cold", 1000): 15, ("sqlite in-process", "cold", 10000): 150,
    ("sqlite in-process", "warm", 100): 2, ("sqlite in-process", "warm", 1000): 20,
    ("sqlite in-process", "warm", 10000): 250, ("postgresql in-process", "cold", 1000): 40,
}  # fmt: skip


def reps(n: int) -> int:
    return {10: 30, 100: 30, 1000: 15, 10000: 6}.get(n, 5)


def run_inprocess(
    spec: str, sizes: list[int], kinds: tuple[str, ...] = ("cold", "warm")
) -> list[dict]:
    service = DagManagerService(
        DagManagerConfig(), store=open_graph_store(spec), queues=InProcessQueues()
    )
    rows = []
    for n in sizes:
        for kind in kinds:
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


def export_revision(rev: str, into: Path) -> Path:
    """The tree of git revision ``rev`` of this checkout, written under ``into``."""
    tree = into / "revision"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "qmtl"],
        capture_output=True, check=False,
    )  # fmt: skip
    if archive.returncode != 0:
        sys.exit(f"--against {rev}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def compare(rev: str, sizes: list[int], rounds: int, postgres: bool) -> None:
    """Cold in-process diffs of this checkout and of ``rev``, alternating child processes."""
    sides = {"this checkout": ROOT}
    samples: dict[tuple[str, str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sides[rev] = export_revision(rev, work)
        pg = devstack.start_postgres() if postgres else None
        try:
            for round_ in range(rounds):
                for side, package in sides.items():
                    backends = {
                        "sqlite in-process": f"sqlite:{work / f'{round_}-{len(samples)}.db'}"
                    }
                    if pg is not None:
                        backends["postgresql in-process"] = pg.new_database("bench")
                    for backend, spec in backends.items():
                        out = work / "child.json"
                        subprocess.run(
                            [sys.executable, __file__, "--child-spec", spec, "--child-out",
                             str(out), "--sizes", ",".join(map(str, sizes))],
                            env={**os.environ, "QMTL_BENCH_PACKAGE": str(package)}, check=True,
                        )  # fmt: skip
                        measured = json.loads(out.read_text())
                        if not measured["package"].startswith(str(package)):
                            sys.exit(f"{side}: measured {measured['package']}, not {package}")
                        for row in measured["rows"]:
                            key = (backend, side, row["n"])
                            samples.setdefault(key, []).extend(row["samples"])
        finally:
            if pg is not None:
                pg.stop()
    rows = []
    for backend in dict.fromkeys(k[0] for k in samples):
        for n in sizes:
            old, new = samples[(backend, rev, n)], samples[(backend, "this checkout", n)]
            rows.append([backend, n, len(new), pct(old, 0.5), pct(old, 0.95), pct(new, 0.5),
                         pct(new, 0.95), pct(new, 0.5) / pct(old, 0.5),
                         pct(new, 0.95) / pct(old, 0.95)])  # fmt: skip
    markdown = (
        f"### Cold diff: this checkout vs {rev} (same run, {rounds} alternating rounds)\n\n"
    ) + table(
        ["backend", "nodes", "runs per side", f"{rev} p50 ms", f"{rev} p95 ms", "p50 ms",
         "p95 ms", "p50 ratio", "p95 ratio"], rows,
    )  # fmt: skip
    save("diff_against", markdown, {"revision": rev, "rows": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default=None, help="default 10,100,1000,10000 (1000,10000 with --against)"
    )
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--against", metavar="REV", help="compare cold diffs with git revision REV")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with --against")
    parser.add_argument("--child-spec", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    default_sizes = "1000,10000" if args.against else "10,100,1000,10000"
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    logging.disable(logging.WARNING)
    tune_gc()  # as the server does
    if args.child_spec:  # one side of --against, in the package QMTL_BENCH_PACKAGE names
        import qmtl

        rows = run_inprocess(args.child_spec, sizes, kinds=("cold",))
        Path(args.child_out).write_text(json.dumps({"package": qmtl.__file__, "rows": rows}))
        return
    if args.against:
        compare(args.against, sizes, args.rounds, postgres=not args.no_postgres)
        return
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
