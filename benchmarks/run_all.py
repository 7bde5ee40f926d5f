"""Run every benchmark and write one report: ``benchmarks/results/REPORT.md``.

    python benchmarks/run_all.py        (or: make bench)

Each benchmark prints its own table with ratios against a baseline measured in the
same run; this collects them with the machine description.  The end-to-end alert
timings (written by ``pytest -m e2e``) are appended when present.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCHMARKS = ["bench_diff.py", "bench_sdk.py", "bench_gateway.py", "bench_metrics.py"]


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    failed = []
    for script in BENCHMARKS:
        print(f"== {script}", flush=True)
        started = time.monotonic()
        if subprocess.run([sys.executable, str(HERE / script)], cwd=HERE).returncode != 0:
            failed.append(script)
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    parts = [
        "# QMTL benchmark report",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. Ratios compare with a baseline measured in the same run.",
        "",
    ]
    for name in ("diff", "sdk", "gateway", "metrics", "alert_timings"):
        path = RESULTS / f"{name}.md"
        if path.exists():
            parts += [path.read_text(), ""]
    (RESULTS / "REPORT.md").write_text("\n".join(parts))
    print(f"report: {RESULTS / 'REPORT.md'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
