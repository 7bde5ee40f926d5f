"""/metrics exposition cost vs number of series, and the scrape duration Prometheus sees.

Renders a registry of N labelled counter series (``_created`` series disabled, as QMTL
runs) in both formats with prometheus_client's encoders -- the baseline -- and with
QMTL's renderer (``qmtl.foundation.exposition``), in the same run.  Then a real
Prometheus (which negotiates OpenMetrics and gzip) scrapes a 10,000-series exporter
served by the library's ``start_http_server`` and by ``qmtl.foundation.metrics
.start_metrics_server``, and reports ``scrape_duration_seconds`` for each (target: QMTL's
at most 60 ms).

    python benchmarks/bench_metrics.py [--sizes 1000,5000,10000,50000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import prometheus_client
from _common import save, table
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as library_openmetrics

from qmtl import devstack
from qmtl.foundation import exposition
from qmtl.foundation import metrics as qm

SCRAPE_TARGET_MS = 60.0


def registry_with(series: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("bench_events_total", "Benchmark series.", ["node_id"], registry=registry)
    for i in range(series):
        counter.labels(f"N{i:08d}").inc(i)
    return registry


def render_ms(encoder: Callable[[CollectorRegistry], bytes], registry: CollectorRegistry,
              repeats: int) -> float:  # fmt: skip
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder(registry)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def prometheus_scrape_seconds(series: int, library: bool, scrapes: int = 8) -> float:
    """Median ``scrape_duration_seconds`` of ``scrapes`` scrapes of a ``series``-series exporter."""
    registry = registry_with(series)
    if library:
        server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
        port = server.server_port
    else:
        exporter = qm.start_metrics_server(port=0, registry=registry)
        port = exporter.port
    config = f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: bench
    static_configs: [{{targets: ['127.0.0.1:{port}']}}]
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
                return values if len(values) >= scrapes else None  # fmt: skip

            values = devstack.wait_for(samples, timeout=60, what=f"{scrapes} scrapes")
        finally:
            prom.stop()
            if library:
                server.shutdown()
                server.server_close()
                thread.join(timeout=5)
            else:
                exporter.stop()
    return statistics.median(values)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000,50000")
    parser.add_argument(
        "--scrape-series", type=int, default=10_000, help="series of the scraped exporters"
    )
    parser.add_argument("--scrapes", type=int, default=8, help="scrapes per exporter (median)")
    args = parser.parse_args()
    prometheus_client.disable_created_metrics()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        repeats = 20 if n <= 10_000 else 5
        registry = registry_with(n)
        lib_text = render_ms(generate_latest, registry, repeats)
        our_text = render_ms(exposition.text_latest, registry, repeats)
        lib_om = render_ms(library_openmetrics, registry, repeats)
        our_om = render_ms(exposition.openmetrics_latest, registry, repeats)
        rows.append([n, lib_text, our_text, our_text / lib_text, lib_om, our_om, our_om / lib_om,
                     our_om * 1000 / n])  # fmt: skip
    library_scrape = prometheus_scrape_seconds(args.scrape_series, True, args.scrapes) * 1000
    scrape = prometheus_scrape_seconds(args.scrape_series, False, args.scrapes) * 1000
    verdict = (
        ("ok" if scrape <= SCRAPE_TARGET_MS else "OVER") if args.scrape_series == 10_000 else ""
    )
    headers = ["series", "text: library ms", "text: qmtl ms", "qmtl/library",
               "OpenMetrics: library ms", "OpenMetrics: qmtl ms", "qmtl/library",
               "OpenMetrics qmtl us/series"]  # fmt: skip
    scrapes = [
        ["prometheus_client start_http_server (baseline)", library_scrape, 1.0, "", ""],
        ["qmtl start_metrics_server", scrape, scrape / library_scrape,
         f"<= {SCRAPE_TARGET_MS:.0f} ms", verdict],
    ]  # fmt: skip
    markdown = (
        "### /metrics exposition cost (median render, `_created` off)\n\n"
        + table(headers, rows)
        + f"\n\nPrometheus-measured `scrape_duration_seconds` at {args.scrape_series:,} series (median of "
        f"{args.scrapes} scrapes; OpenMetrics + gzip as Prometheus negotiates):\n\n"
        + table(["exporter", "scrape ms", "ratio vs library", "target", "verdict"], scrapes)
        + "\n"
    )
    # "scrape_ms_10k" is the history column's source; a quick run scrapes fewer series.
    save("metrics", markdown, {"rows": rows, "scrape_series": args.scrape_series,
                               "scrape_ms_10k": scrape, "scrape_ms_10k_library": library_scrape})  # fmt: skip


if __name__ == "__main__":
    main()
