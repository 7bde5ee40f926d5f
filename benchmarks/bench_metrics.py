"""/metrics exposition cost vs number of series, and the scrape duration Prometheus sees.

Renders a registry of N labelled counter series with prometheus_client's
``generate_latest`` (``_created`` series disabled, as QMTL runs) and, as the same-run
baseline, with ``_created`` enabled.  Then a real Prometheus scrapes a 10,000-series
exporter and reports ``scrape_duration_seconds``.

    python benchmarks/bench_metrics.py [--sizes 1000,5000,10000,50000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import prometheus_client
from _common import save, table
from prometheus_client import CollectorRegistry, Counter, generate_latest

from qmtl import devstack
from qmtl.foundation import metrics as qm


def registry_with(series: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("bench_events_total", "Benchmark series.", ["node_id"], registry=registry)
    for i in range(series):
        counter.labels(f"N{i:08d}").inc(i)
    return registry


def render_ms(series: int, created: bool, repeats: int) -> tuple[float, int]:
    if created:
        prometheus_client.enable_created_metrics()
    else:
        prometheus_client.disable_created_metrics()
    try:
        registry = registry_with(series)
        samples, size = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            size = len(generate_latest(registry))
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples), size
    finally:
        prometheus_client.disable_created_metrics()


def prometheus_scrape_seconds(series: int) -> float:
    registry = registry_with(series)
    exporter = qm.start_metrics_server(port=0, registry=registry)
    config = f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: bench
    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]
"""
    with tempfile.TemporaryDirectory() as tmp:
        prom = devstack.start_prometheus(Path(tmp), config)
        try:

            def samples() -> list[float] | None:
                data = httpx.get(
                    f"{prom.url}/api/v1/query",
                    params={"query": 'scrape_duration_seconds{job="bench"}[30s]'},
                    timeout=5,
                ).json()
                result = data["data"]["result"]
                values = [float(v[1]) for v in result[0]["values"]] if result else []
                return values if len(values) >= 8 else None  # fmt: skip

            values = devstack.wait_for(samples, timeout=60, what="8 scrapes")
        finally:
            prom.stop()
            exporter.stop()
    return statistics.median(values)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000,50000")
    args = parser.parse_args()
    rows = []
    base = None
    for n in (int(s) for s in args.sizes.split(",")):
        repeats = 20 if n <= 10_000 else 5
        off_ms, off_bytes = render_ms(n, False, repeats)
        on_ms, _on_bytes = render_ms(n, True, repeats)
        per_series_us = off_ms * 1000 / n
        base = base or per_series_us
        verdict = ("ok" if off_ms <= 100 else "OVER") if n == 10_000 else ""
        rows.append([n, off_ms, off_bytes, per_series_us, per_series_us / base, on_ms, on_ms / off_ms,
                     "<= 100 ms" if n == 10_000 else "", verdict])  # fmt: skip
    scrape = prometheus_scrape_seconds(10_000) * 1000
    markdown = (
        "### /metrics exposition cost\n\n"
        + table(
            [
                "series",
                "render ms (_created off)",
                "bytes",
                "us/series",
                "per-series ratio vs first",
                "render ms (_created on)",
                "on/off ratio",
                "target",
                "verdict",
            ],
            rows,
        )
        + f"\n\nPrometheus-measured scrape_duration_seconds at 10,000 series (median of 8 scrapes): {scrape:.1f} ms\n"
    )
    save("metrics", markdown, {"rows": rows, "scrape_ms_10k": scrape})


if __name__ == "__main__":
    main()
