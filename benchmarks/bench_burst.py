"""A burst of submissions over capacity against a Gateway on embedded defaults.

Open-loop arrivals (a new connection per submission, from 64 loopback addresses so the
per-address connection cap is not what answers) at a rate under capacity and at one
far over it, each for a few seconds, every submission a distinct 20-node DAG.  Reported
per rate: answers by status, p50/p95 of accepted and of refused answers, the peak of
``gateway_submissions_in_flight`` and the Gateway's resident memory before, at its peak
and after.  The under-capacity row is the baseline of the ratio columns.

    python benchmarks/bench_burst.py [--rates 200,2000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from _common import pct, save, table

from qmtl.devstack.stack import LocalStack
from qmtl.foundation.dag import chain_dag

SOURCES = [f"127.0.{i // 250 + 1}.{i % 250 + 1}" for i in range(64)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler:
    """Peaks of the Gateway's RSS and in-flight gauge while a burst runs."""

    def __init__(self, pid: int, metrics_url: str) -> None:
        self.pid, self.metrics_url = pid, metrics_url
        self.peak_rss, self.peak_in_flight = 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(0.2):
                self.peak_rss = max(self.peak_rss, rss_mb(self.pid))
                try:
                    text = client.get(self.metrics_url).text
                except httpx.HTTPError:
                    continue  # refused under load: the next sample tries again
                for line in text.splitlines():
                    if line.startswith("gateway_submissions_in_flight "):
                        self.peak_in_flight = max(self.peak_in_flight, float(line.split()[1]))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def one(port: int, source: str, body: bytes, answers: list[tuple[int, float]]) -> None:
    started = time.perf_counter()
    status = 0  # no answer: the connection was refused or cut
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        try:
            writer.write(
                b"POST /strategies HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 120)
            status = int(line.split()[1]) if line else 0
        finally:
            writer.close()
    except (TimeoutError, OSError, ValueError, IndexError):
        pass
    answers.append((status, (time.perf_counter() - started) * 1000))


async def burst(port: int, rate: int, seconds: float, tag: str) -> list[tuple[int, float]]:
    count = int(rate * seconds)
    bodies = [
        json.dumps({"dag": json.loads(chain_dag(20, salt=f"{tag}-{i}"))}).encode()
        for i in range(count)
    ]
    answers: list[tuple[int, float]] = []
    tasks = []
    started = time.perf_counter()
    for i, body in enumerate(bodies):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(port, SOURCES[i % len(SOURCES)], body, answers)))
    await asyncio.gather(*tasks)
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="200,2000")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    logging.disable(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in rates:  # a fresh stack per rate: nothing carried over
            with LocalStack(Path(tmp) / f"r{rate}", drills=False) as stack:
                gateway = stack.services["gateway"]
                before = rss_mb(gateway.pid)
                with Sampler(gateway.pid, f"{stack.url('gateway')}/metrics") as sampler:
                    port = int(stack.url("gateway").rsplit(":", 1)[1])
                    answers = asyncio.run(burst(port, rate, args.seconds, f"b{rate}"))
                after = rss_mb(gateway.pid)
            codes = Counter(status for status, _ in answers)
            accepted = [ms for status, ms in answers if status in (200, 202)]
            refused = [ms for status, ms in answers if status == 429]
            rows.append([
                rate, len(answers), codes[200] + codes[202], codes[429],
                ", ".join(f"{'no answer' if status == 0 else status}: {n}"
                          for status, n in sorted(codes.items())
                          if status not in (200, 202, 429)) or "-",
                pct(accepted, 0.5), pct(accepted, 0.95), pct(refused, 0.95),
                sampler.peak_in_flight, before, max(sampler.peak_rss, after), after,
            ])  # fmt: skip
    base = rows[0]
    for row in rows:
        row += [row[6] / base[6], row[10] / base[10]]
    headers = [
        "rate/s", "sent", "accepted", "429", "other answers", "accepted p50 ms", "accepted p95 ms",
        "429 p95 ms", "peak in flight", "RSS before MB", "RSS peak MB", "RSS after MB",
        "accepted p95 ratio", "RSS peak ratio",
    ]  # fmt: skip
    markdown = (
        f"### Burst over capacity ({args.seconds:g} s per rate, embedded defaults, "
        f"ratios vs {rates[0]}/s)\n\n" + table(headers, rows)
    )
    save("burst", markdown, [dict(zip(headers, row, strict=True)) for row in rows])


if __name__ == "__main__":
    main()
