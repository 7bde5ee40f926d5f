"""Gateway submission latency and throughput at 1, 8 and 32 concurrent clients.

Each submission is a distinct 20-node DAG (no idempotent shortcut) to a Gateway on
embedded defaults that diffs over real gRPC.  The load generator speaks raw HTTP/1.1
over asyncio sockets with keep-alive (httpx costs 1-4 ms of CPU per request here and
would be the bottleneck); its own CPU time per request is reported.  Three runs per
concurrency level; the ratio column compares with the 1-client run of the same round.
The same load is sent to ``floor_service.py`` (the cheapest service doing the same
essential work) in the same run: the second table is the Gateway against that floor.
The third sends it to the floor's front calling the stack's own DAG Manager: the
Gateway's own cost, with the diff on both sides.

Each load lasts a few seconds (1,600 requests): the services' deferred work (the SQLite
checkpointer copies what a load wrote up to half a second later, background loops)
then falls mostly inside the load that caused it.  With 400 requests a load lasted about
a second and much of that work ran during the next load, usually the floor's: the
Gateway's ratios read better than it sustains.

    python benchmarks/bench_gateway.py [--requests 1600] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import cpu_seconds, pct, save, table

from qmtl.devstack.processes import ManagedProcess, free_port, http_ok
from qmtl.devstack.stack import LocalStack
from qmtl.foundation.dag import chain_dag

TARGETS = {8: 20.0, 32: 80.0}


async def post_submission(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
) -> None:
    """One ``POST /strategies`` on a keep-alive connection; raises unless it is a 200."""
    writer.write(
        b"POST /strategies HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value.strip())
    payload = await reader.readexactly(length)
    if b" 200 " not in status_line:
        raise RuntimeError(f"submission failed: {status_line!r} {payload[:200]!r}")


async def client(host: str, port: int, bodies: list[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body in bodies:
            started = time.perf_counter()
            await post_submission(reader, writer, body)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()


async def load(
    port: int,
    concurrency: int,
    requests: int,
    salt: str,
    *,
    dag_salt: str | None = "",
) -> tuple[list[float], float, float]:
    """``dag_salt=None``: one DAG under distinct strategy ids (warm: queues exist)."""
    per_client = max(1, requests // concurrency)
    shared = json.loads(chain_dag(20, salt="warm-shared"))

    def body(c: int, i: int) -> bytes:
        if dag_salt is None:
            return json.dumps(
                {"dag": shared, "world_id": "bench", "strategy_id": f"{salt}-{c}-{i}"}
            ).encode()
        return json.dumps(
            {"dag": json.loads(chain_dag(20, salt=f"{salt}-{c}-{i}")), "world_id": "bench"}
        ).encode()

    bodies = [[body(c, i) for i in range(per_client)] for c in range(concurrency)]
    latencies: list[float] = []
    cpu_started, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client("127.0.0.1", port, b, latencies) for b in bodies))
    elapsed = time.perf_counter() - started
    cpu_ms_per_request = (time.process_time() - cpu_started) * 1000 / len(latencies)
    return latencies, len(latencies) / elapsed, cpu_ms_per_request


@contextmanager
def floor_service(
    workdir: Path, *, dagmanager_grpc: str | None = None
) -> Iterator[tuple[int, list[int]]]:
    """The floor (``floor_service.py``): its HTTP port and its pids while it runs.

    With ``dagmanager_grpc`` (``host:port``) only the floor's front runs, calling that
    DAG Manager's ``DiffUnary`` (one pid: the DAG Manager is the caller's to count).
    """
    http_port = free_port()
    here = Path(__file__).resolve().parent
    tag = "floor-dm" if dagmanager_grpc else "floor"
    backend = None
    if dagmanager_grpc is None:
        grpc_port = str(free_port())
        backend = ManagedProcess(
            "floor-grpc", [sys.executable, str(here / "floor_service.py"), "grpc", grpc_port],
            log_path=workdir / "floor-grpc.log",
        )  # fmt: skip
    else:
        grpc_port = dagmanager_grpc.rsplit(":", 1)[1]
    front = ManagedProcess(
        f"{tag}-http",
        [sys.executable, str(here / "floor_service.py"), "http", str(http_port), grpc_port,
         str(workdir / f"{tag}.db"), *(["dagmanager"] if dagmanager_grpc else [])],
        log_path=workdir / f"{tag}-http.log",
    )  # fmt: skip
    try:
        front.wait_ready(lambda: http_ok(f"http://127.0.0.1:{http_port}/health"), timeout=60)
        yield http_port, [front.pid] + ([backend.pid] if backend else [])
    finally:
        front.stop()
        if backend:
            backend.stop()


def measured(
    port: int, pids: list[int], concurrency: int, requests: int, salt: str
) -> tuple[list[float], float, float, float]:
    """One load: latencies, req/s, the load generator's and the server processes' CPU ms
    per request."""
    cpu_before = cpu_seconds(pids)
    latencies, throughput, client_cpu = asyncio.run(load(port, concurrency, requests, salt))
    server_cpu = (cpu_seconds(pids) - cpu_before) * 1000 / len(latencies)
    return latencies, throughput, client_cpu, server_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rows, raw, versus, versus_dm = [], [], [], []
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalStack(Path(tmp) / "stack", drills=False) as stack,  # production: no drill wrappers
        floor_service(Path(tmp)) as (floor_port, floor_pids),
        floor_service(Path(tmp), dagmanager_grpc=stack.grpc_target) as (front_port, front_pids),
    ):
        port = int(stack.url("gateway").rsplit(":", 1)[1])
        ours = [stack.pids()["gateway"], stack.pids()["dagmanager"]]
        front_pids = [*front_pids, stack.pids()["dagmanager"]]
        asyncio.run(load(port, 4, 40, "warmup"))
        asyncio.run(load(floor_port, 4, 40, "warmup-floor"))
        asyncio.run(load(front_port, 4, 40, "warmup-floor-dm"))
        for run in range(args.runs):
            base_p50 = None
            for concurrency in (1, 8, 32):
                latencies, throughput, cpu, our_cpu = measured(
                    port, ours, concurrency, args.requests, f"r{run}c{concurrency}"
                )
                p50, p95, p99 = (pct(latencies, q) for q in (0.5, 0.95, 0.99))
                base_p50 = base_p50 or p50
                target = TARGETS.get(concurrency)
                verdict = "" if target is None else ("ok" if p95 <= target else "OVER")
                rows.append([run + 1, concurrency, len(latencies), p50, p95, p99, throughput, p50 / base_p50, cpu,
                             "" if target is None else target, verdict])  # fmt: skip
                raw.append(
                    {
                        "run": run + 1,
                        "clients": concurrency,
                        "latencies": latencies,
                        "throughput": throughput,
                    }
                )
                if concurrency in (8, 32):
                    for base_port, base_pids, salt, into in (
                        (floor_port, floor_pids, "f", versus),
                        (front_port, front_pids, "fdm", versus_dm),
                    ):
                        base_lat, base_tput, _, base_cpu = measured(
                            base_port, base_pids, concurrency, args.requests,
                            f"{salt}{run}c{concurrency}",
                        )  # fmt: skip
                        base_p95 = pct(base_lat, 0.95)
                        into.append([run + 1, concurrency, base_p95, p95, p95 / base_p95,
                                     base_tput, throughput, throughput / base_tput,
                                     base_cpu, our_cpu, our_cpu / base_cpu])  # fmt: skip
    markdown = "### Gateway submissions (20-node DAG, embedded defaults, gRPC to the DAG Manager)\n\n" + table(
        ["run", "clients", "requests", "p50 ms", "p95 ms", "p99 ms", "req/s", "p50 ratio vs 1 client",
         "client CPU ms/req", "target p95 ms", "verdict"], rows,
    )  # fmt: skip
    markdown += (
        "\n\n### Gateway vs its floor (floor_service.py: pydantic parse, one SQLite row, one "
        "unary gRPC call; same run)\n\nTargets: p95 ratio <= 1.5, throughput "
        "ratio >= 0.7 at 8 clients. CPU is user + system time of the server processes "
        "(both of the floor's, the Gateway and the DAG Manager) per request.\n\n"
    ) + table(
        ["run", "clients", "floor p95 ms", "gateway p95 ms", "p95 ratio", "floor req/s",
         "gateway req/s", "throughput ratio", "floor CPU ms/req", "gateway + DAG Manager CPU ms/req",
         "CPU ratio"], versus,
    )  # fmt: skip
    markdown += (
        "\n\n### Gateway vs the floor's front calling the same DAG Manager (same run)\n\n"
        "A decomposition, not a target: the floor's front (pydantic parse, one SQLite row) "
        "makes the Gateway's own call, `DiffUnary` on the stack's DAG Manager, so both "
        "sides pay the same diff and the ratios are what the Gateway's code costs. CPU is "
        "the front's plus the DAG Manager's.\n\n"
    ) + table(
        ["run", "clients", "front p95 ms", "gateway p95 ms", "p95 ratio", "front req/s",
         "gateway req/s", "throughput ratio", "front + DAG Manager CPU ms/req",
         "gateway + DAG Manager CPU ms/req", "CPU ratio"], versus_dm,
    )  # fmt: skip
    save("gateway", markdown, {"runs": raw, "versus_floor": versus, "versus_floor_dm": versus_dm})


if __name__ == "__main__":
    main()
