"""Memory soak: RSS of every service under a steady stream of distinct submissions.

``qmtl up``'s services (embedded defaults, drills off) get distinct 10-node DAGs at a
steady rate through the Gateway for ``--seconds``.  Every few seconds the RSS of each process
and the DAG Manager's plan cache (``dagmanager_plan_cache_bytes``/``_entries`` from its
``/metrics``) are sampled (``--sample-seconds``).  The plan cache budget is set small (``--plan-cache-mb``, 8 by
default against 64 in production) so that it fills within the run.

The verdict compares, in the same run, each process's RSS growth per 1,000 submissions
*after* the plan cache reached its budget with the DAG Manager's growth *before*: a
bounded cache shows a ratio near 0 (flat), an unbounded one near 1.

    python benchmarks/bench_soak.py [--seconds 300] [--rate 20] [--plan-cache-mb 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path

from _common import save, table
from bench_gateway import post_submission

from qmtl.devstack.stack import LocalStack
from qmtl.foundation.dag import chain_dag
from qmtl.testing.metrics import scrape


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def submit_steadily(port: int, rate: float, seconds: float, sent: list[int]) -> None:
    """One keep-alive connection, ``rate`` distinct submissions per second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            due = started + sent[0] / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            body = json.dumps(
                {"dag": json.loads(chain_dag(10, salt=f"soak-{sent[0]}")), "world_id": "soak"}
            ).encode()
            await post_submission(reader, writer, body)
            sent[0] += 1
    finally:
        writer.close()


async def soak(
    stack: LocalStack, rate: float, seconds: float, every: float
) -> list[dict[str, float]]:
    port = int(stack.url("gateway").rsplit(":", 1)[1])
    pids = {name: service.pid for name, service in stack.services.items()}
    metrics_url = f"{stack.url('dagmanager')}/metrics"
    sent = [0]
    load = asyncio.create_task(submit_steadily(port, rate, seconds, sent))
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    while True:
        metrics = await asyncio.to_thread(scrape, metrics_url)
        samples.append(
            {
                "t": time.monotonic() - started,
                "submissions": sent[0],
                "cache_mb": (metrics.get_value("dagmanager_plan_cache_bytes") or 0) / 2**20,
                "cache_entries": metrics.get_value("dagmanager_plan_cache_entries") or 0,
                **{f"rss_{name}": rss_mb(pid) for name, pid in pids.items()},
            }
        )
        if load.done():
            await load  # raises if the load failed
            return samples
        await asyncio.wait({load}, timeout=every)


def growth_per_1000(samples: list[dict[str, float]], key: str) -> float:
    """Least-squares slope of ``key`` (MB) per 1,000 submissions."""
    xs = [s["submissions"] for s in samples]
    ys = [s[key] for s in samples]
    if len(xs) < 2 or max(xs) == min(xs):
        return float("nan")
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    num = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    den = sum((x - mean_x) ** 2 for x in xs)
    return num / den * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--plan-cache-mb", type=float, default=8)
    parser.add_argument("--sample-seconds", type=float, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    budget = int(args.plan_cache_mb * 2**20)
    overrides = {"dagmanager": {"plan_cache_bytes": budget}}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalStack(Path(tmp) / "stack", overrides=overrides, drills=False) as stack,
    ):
        samples = asyncio.run(soak(stack, args.rate, args.seconds, args.sample_seconds))
    names = sorted(k.removeprefix("rss_") for k in samples[0] if k.startswith("rss_"))
    full_at = next(
        (i for i, s in enumerate(samples) if s["cache_mb"] * 2**20 >= 0.95 * budget), None
    )
    rows = [
        [round(s["t"]), int(s["submissions"]), s["cache_mb"], int(s["cache_entries"]),
         *(s[f"rss_{n}"] for n in names)]
        for s in samples
    ]  # fmt: skip
    markdown = (
        f"### Memory soak ({args.rate:g} distinct 10-node submissions/s for {args.seconds:g} s, "
        f"plan cache budget {args.plan_cache_mb:g} MB)\n\n"
        + table(["s", "submissions", "plan cache MB", "entries", *(f"RSS {n} MB" for n in names)],
                rows[:: max(1, len(rows) // 20)] + ([rows[-1]] if len(rows) > 20 else []))
    )  # fmt: skip
    result: dict[str, object] = {"samples": samples, "budget_mb": args.plan_cache_mb}
    if full_at is None or full_at < 2 or len(samples) - full_at < 3:
        markdown += (
            "\n\nThe plan cache did not fill early enough to compare growth before and after "
            "(run longer, faster, or with a smaller --plan-cache-mb).\n"
        )
    else:
        before = growth_per_1000(samples[: full_at + 1], "rss_dagmanager")
        verdict_rows = []
        # The last half of the run after the budget: other bounded caches (SQLite's page
        # cache, 8 MiB) may still be filling right after the plan cache is full.
        late = samples[full_at + (len(samples) - full_at) // 2 :]
        for name in names:
            after = growth_per_1000(samples[full_at:], f"rss_{name}")
            verdict_rows.append([name, after, after / before if before > 0 else float("nan"),
                                 growth_per_1000(late, f"rss_{name}")])  # fmt: skip
        markdown += (
            f"\n\nBudget reached after {int(samples[full_at]['submissions'])} submissions. "
            f"DAG Manager RSS growth before that: {before:.2f} MB per 1,000 submissions.\n\n"
            + table(["process", "RSS growth after, MB/1,000", "ratio vs DAG Manager before",
                     "last half of that, MB/1,000"], verdict_rows)
        )  # fmt: skip
        result["growth_before_mb_per_1000"] = before
        result["growth_after"] = {row[0]: row[1] for row in verdict_rows}
        result["growth_late"] = {row[0]: row[3] for row in verdict_rows}
    save("soak", markdown, result)


if __name__ == "__main__":
    main()
