"""Run every benchmark and write one report: ``benchmarks/results/REPORT.md``.

    python benchmarks/run_all.py           (or: make bench)
    python benchmarks/run_all.py --quick   (tiny sizes: does every benchmark still run?)

Each benchmark prints its own table with ratios against a baseline measured in the
same run; this collects them with the machine description.  The end-to-end alert
timings (written by ``pytest -m e2e``) are appended when present.  One line per run
(date, commit, key figures) is appended to ``benchmarks/results/history.csv``, which is
committed, so a regression shows as a step in a column.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS

HERE = Path(__file__).resolve().parent
#: Each benchmark with the arguments of a ``--quick`` run: every code path, tiny sizes
#: (the smoke test runs that; its figures mean nothing).
BENCHMARKS = {
    "bench_diff.py": ["--sizes", "10,100"],
    "bench_diff_phases.py": ["--diffs", "10", "--no-production"],
    "bench_sdk.py": ["--events", "300", "--rounds", "1", "--rows", "2000"],
    "bench_gateway.py": ["--requests", "32", "--runs", "1"],
    "bench_metrics.py": ["--sizes", "1000", "--scrape-series", "1000", "--scrapes", "3"],
    "bench_replicas.py": ["--requests", "24"],
    "bench_burst.py": ["--rates", "20,200", "--seconds", "1"],
    "bench_soak.py": [
        "--seconds",
        "12",
        "--rate",
        "20",
        "--plan-cache-mb",
        "0.5",
        "--sample-seconds",
        "1",
    ],
}
#: New columns go before ``failed``; an older file gets them (empty in its old rows).
HISTORY_COLUMNS = [
    "date", "commit", "gateway_p95_ratio_vs_floor_8", "gateway_throughput_ratio_vs_floor_8",
    "gateway_p95_ms_32", "diff_cold_p95_ms_1000", "diff_cold_p95_ms_10000",
    "diff_pg_cold_p95_ms_1000", "metrics_scrape_ms_10k", "replicas_2_vs_1_throughput_warm_8",
    "soak_dagmanager_rss_mb_per_1000_after_budget", "gateway_p95_ratio_vs_floor_32",
    "floor_req_s_8", "gateway_cpu_ratio_vs_floor_8", "gateway_p95_ratio_vs_floor_dm_8",
    "gateway_throughput_ratio_vs_floor_dm_8", "failed",
]  # fmt: skip


def _load(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def key_figures() -> dict[str, str]:
    """The figures a regression would show in, from this run's result files ('' if absent)."""
    out: dict[str, str] = {}
    gateway = _load("gateway")
    if gateway and gateway.get("versus_floor"):
        at8 = [row for row in gateway["versus_floor"] if row[1] == 8]
        out["gateway_p95_ratio_vs_floor_8"] = f"{statistics.median(r[4] for r in at8):.2f}"
        out["gateway_throughput_ratio_vs_floor_8"] = f"{statistics.median(r[7] for r in at8):.2f}"
        at32 = [_p95(r["latencies"]) for r in gateway["runs"] if r["clients"] == 32]
        out["gateway_p95_ms_32"] = f"{statistics.median(at32):.1f}"
        # The floor's own pace says how fast the machine was: absolute figures move with
        # it (the floor ran 520-970 req/s within minutes), the ratios much less.
        floor32 = [row for row in gateway["versus_floor"] if row[1] == 32]
        out["gateway_p95_ratio_vs_floor_32"] = f"{statistics.median(r[4] for r in floor32):.2f}"
        out["floor_req_s_8"] = f"{statistics.median(r[5] for r in at8):.0f}"
        out["gateway_cpu_ratio_vs_floor_8"] = f"{statistics.median(r[10] for r in at8):.2f}"
    if gateway and gateway.get("versus_floor_dm"):
        # Against the floor's front calling the same DAG Manager: the Gateway's own share.
        dm8 = [row for row in gateway["versus_floor_dm"] if row[1] == 8]
        out["gateway_p95_ratio_vs_floor_dm_8"] = f"{statistics.median(r[4] for r in dm8):.2f}"
        out["gateway_throughput_ratio_vs_floor_dm_8"] = (
            f"{statistics.median(r[7] for r in dm8):.2f}"
        )
    diff = _load("diff")
    if diff:
        for column, backend, n in (
            ("diff_cold_p95_ms_1000", "sqlite in-process", 1000),
            ("diff_cold_p95_ms_10000", "sqlite in-process", 10000),
            ("diff_pg_cold_p95_ms_1000", "postgresql in-process", 1000),
        ):
            for r in diff.get(backend, []):
                if r["kind"] == "cold" and r["n"] == n:
                    out[column] = f"{_p95(r['samples']):.1f}"
    metrics = _load("metrics")
    if metrics:
        out["metrics_scrape_ms_10k"] = f"{metrics['scrape_ms_10k']:.1f}"
    replicas = _load("replicas")
    if replicas:
        one = {(w, c): t for w, c, _p50, _p95v, t in replicas["1 replica, direct"]}
        two = {(w, c): t for w, c, _p50, _p95v, t in replicas["2 replicas, HAProxy"]}
        out["replicas_2_vs_1_throughput_warm_8"] = f"{two[('warm', 8)] / one[('warm', 8)]:.2f}"
    soak = _load("soak")
    if soak and "growth_after" in soak:
        out["soak_dagmanager_rss_mb_per_1000_after_budget"] = (
            f"{soak['growth_after']['dagmanager']:.2f}"
        )
    return out


def append_history(failed: list[str]) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=HERE,
        check=False,
    ).stdout.strip()
    row = {"date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), "commit": commit or "unknown",
           "failed": " ".join(failed), **key_figures()}  # fmt: skip
    write_history_row(RESULTS / "history.csv", row)


def write_history_row(path: Path, row: dict[str, str]) -> None:
    """Append ``row``; a file written with fewer columns is rewritten with today's header
    first, its old rows kept with the new columns empty."""
    if path.exists():
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames != HISTORY_COLUMNS:
                unknown = set(reader.fieldnames or ()) - set(HISTORY_COLUMNS)
                if unknown:
                    raise SystemExit(
                        f"error: {path} has columns this run_all.py does not know "
                        f"({', '.join(sorted(unknown))}); it was written by a newer checkout"
                    )
                old_rows = list(reader)
                with path.open("w", newline="") as out:
                    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, restval="")
                    writer.writeheader()
                    writer.writerows(old_rows)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: proves every benchmark runs (minutes)"
    )
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = []
    for script, quick in BENCHMARKS.items():
        print(f"== {script}", flush=True)
        started = time.monotonic()
        command = [sys.executable, str(HERE / script), *(quick if args.quick else [])]
        if subprocess.run(command, cwd=HERE).returncode != 0:
            failed.append(script)
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    parts = [
        "# QMTL benchmark report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. Ratios compare with a baseline measured in the same run.",
        "",
    ]
    for name in ("diff", "diff_phases", "sdk", "gateway", "metrics", "replicas", "soak",
                 "alert_timings"):  # fmt: skip
        path = RESULTS / f"{name}.md"
        if path.exists():
            parts += [path.read_text(), ""]
    (RESULTS / "REPORT.md").write_text("\n".join(parts))
    figures = key_figures()
    print("key figures: " + " ".join(f"{k}={figures.get(k, '')}" for k in HISTORY_COLUMNS[2:-1]))
    if args.quick:  # tiny sizes: the figures mean nothing, keep them out of the history
        print(f"report: {RESULTS / 'REPORT.md'} (quick run: history not written)")
    else:
        append_history(failed)
        print(f"report: {RESULTS / 'REPORT.md'}; history: {RESULTS / 'history.csv'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
