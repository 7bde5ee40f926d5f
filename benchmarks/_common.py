"""Shared bits of the benchmarks: percentiles, Markdown tables, result files."""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where result files go; the smoke test points it at a temporary directory so a quick
#: run never overwrites the figures of a real one.
RESULTS = Path(os.environ.get("QMTL_BENCH_RESULTS") or ROOT / "benchmarks" / "results")
#: The ``qmtl`` package measured: this checkout's, or another revision's exported tree
#: (``bench_diff.py --against REV`` runs its measurements in a child process that way).
PACKAGE_ROOT = Path(os.environ.get("QMTL_BENCH_PACKAGE") or ROOT)
sys.path.insert(0, str(PACKAGE_ROOT))


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time the processes used so far (every thread), from /proc.

    CPU per request says what the work cost, where throughput and latency also say how
    the machine's cores were shared out; it still moves with contention (thread
    hand-offs, preemption), so it is compared within one run like every other figure.
    """
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, markdown: str, data: object) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(markdown + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    print(markdown)
