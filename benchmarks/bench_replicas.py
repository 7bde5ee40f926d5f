"""Submissions with 1 vs 2 replicas of every service (PostgreSQL, Kafka, HAProxy).

Same load generator as bench_gateway (raw HTTP/1.1 keep-alive clients, 20-node DAGs).
Three set-ups in one run: one replica addressed directly, one replica behind HAProxy
(the balancer's own cost), two replicas behind HAProxy; ratios compare with the direct
single replica.  Two workloads: *warm* -- one DAG submitted under distinct strategy
ids (every submission is new and diffed, its queues exist) -- and *cold* -- distinct
DAGs, 20 new topics each.  Cold numbers are bound by the test broker: tansu's topic
creation grows linearly with the topics it holds (measured: 14 ms per 20 topics at 1,000
topics, 110 ms at 6,000), which a real Kafka controller does not.  On a 2-core machine
every process shares the same two cores, so a second replica cannot add CPU.

    python benchmarks/bench_replicas.py [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from _common import pct, save, table
from bench_gateway import load

from qmtl import devstack
from qmtl.devstack.components import Backend, start_haproxy
from qmtl.devstack.stack import LocalStack

#: tansu creates topics slower with every topic it holds, and far slower on a loaded
#: machine; a cold diff waiting on it must not time out into a queued answer (neither at
#: the broker nor at the Gateway's deadline for the DAG Manager, under its 60 s lease).
SLOW_BROKER = {
    "dagmanager": {"kafka_timeout_seconds": 40},
    "gateway": {"dagmanager_timeout_seconds": 45},
}


def measure(port: int, requests: int, tag: str) -> list[tuple[str, int, float, float, float]]:
    asyncio.run(load(port, 4, 40, f"warmup-{tag}"))
    rows = []
    # Cold submissions create 20 topics each; tansu slows down with every topic it holds,
    # so the cold runs are a quarter of the warm ones to stay clear of its timeouts.
    for workload, salt, count in (("warm", None, requests), ("cold", tag, max(32, requests // 4))):
        for clients in (8, 32):
            latencies, throughput, _cpu = asyncio.run(
                load(port, clients, count, f"{tag}-{workload}-{clients}", dag_salt=salt)
            )
            rows.append((workload, clients, pct(latencies, 0.5), pct(latencies, 0.95), throughput))
            print(f"{tag} {workload} {clients} clients: p95 {rows[-1][3]:.1f} ms, "
                  f"{throughput:.0f}/s", file=sys.stderr, flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    results: dict[str, list[tuple[str, int, float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        postgres = devstack.start_postgres()
        try:
            # A fresh broker per set-up: tansu slows down with every topic it holds, and
            # the set-ups must not inherit each other's topics.
            for setup, replicas, balancer in (
                ("1 replica, direct", 1, False), ("1 replica, HAProxy", 1, True), ("2 replicas, HAProxy", 2, False),
            ):  # fmt: skip
                tag = f"r{len(results)}"
                kafka = devstack.start_kafka(Path(tmp) / f"kafka-{tag}")
                try:
                    with LocalStack(Path(tmp) / tag, SLOW_BROKER, kafka=kafka.bootstrap,
                                    postgres_dsn=postgres.dsn, replicas=replicas,
                                    drills=False) as stack:  # fmt: skip
                        port = int(stack.url("gateway").rsplit(":", 1)[1])
                        if not balancer:
                            results[setup] = measure(port, args.requests, tag)
                            continue
                        lb = start_haproxy(
                            Path(tmp) / f"lb-{tag}",
                            [Backend("gateway", (("g1", f"127.0.0.1:{port}", None),))],
                        )
                        try:
                            results[setup] = measure(
                                int(lb.frontends["gateway"].rsplit(":", 1)[1]), args.requests, tag
                            )
                        finally:
                            lb.stop()
                finally:
                    kafka.stop()
        finally:
            postgres.stop()
    base = {(w, c): (p95, tput) for w, c, _p50, p95, tput in results["1 replica, direct"]}
    rows = [
        [setup, workload, clients, p50, p95, tput, p95 / base[(workload, clients)][0],
         tput / base[(workload, clients)][1]]
        for setup, measured in results.items()
        for workload, clients, p50, p95, tput in measured
    ]  # fmt: skip
    markdown = "### Replicas (PostgreSQL + Kafka, 20-node DAGs; ratios vs 1 replica direct)\n\n" + table(
        ["set-up", "workload", "clients", "p50 ms", "p95 ms", "req/s", "p95 ratio", "throughput ratio"], rows
    )  # fmt: skip
    save("replicas", markdown, {k: v for k, v in results.items()})


if __name__ == "__main__":
    main()
