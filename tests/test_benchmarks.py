"""Every benchmark still runs: ``run_all.py --quick`` as a user would type it.

Tiny sizes, results in a temporary directory; the figures are not judged (the
machines are shared), only that each benchmark finishes, writes its table and that
every key figure of the history row can be computed from what they wrote.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_run_all_quick_runs_every_benchmark(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "benchmarks/run_all.py", "--quick"],
        cwd=ROOT, env={**os.environ, "QMTL_BENCH_RESULTS": str(tmp_path)},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    report = (tmp_path / "REPORT.md").read_text()
    for heading in ("### Diff latency", "### SDK", "### Gateway vs its floor", "### /metrics",
                    "### Replicas", "### Memory soak", "Budget reached after"):  # fmt: skip
        assert heading in report, (heading, report[:2000])
    figures = re.search(r"^key figures: (.*)$", run.stdout, re.M)
    assert figures, output[-3000:]
    values = dict(pair.split("=", 1) for pair in figures.group(1).split())
    # The diff figures are taken at 1,000 and 10,000 nodes, which a quick run skips.
    quick_sizes = {"diff_cold_p95_ms_1000", "diff_cold_p95_ms_10000", "diff_pg_cold_p95_ms_1000"}
    empty = sorted(k for k, v in values.items() if not v and k not in quick_sizes)
    assert empty == [], f"key figures without a value: {empty}"
    diff = json.loads((tmp_path / "diff.json").read_text())
    assert sorted(diff) == ["postgresql in-process", "sqlite in-process", "sqlite over gRPC"]
    for backend, rows in diff.items():
        assert {(r["kind"], r["n"]) for r in rows} == {
            (kind, n) for kind in ("cold", "warm") for n in (10, 100)
        }, backend
    assert not (tmp_path / "history.csv").exists()  # a quick run is not history
    for name in ("diff", "sdk", "gateway", "metrics", "replicas", "soak"):
        assert (tmp_path / f"{name}.json").exists(), name  # written where we pointed them


@pytest.mark.integration
def test_bench_diff_compares_with_a_git_revision(tmp_path: Path) -> None:
    """``--against REV`` measures both sides in the same run; each side's child process
    must import its own tree (the parent refuses a child that measured the wrong one)."""
    run = subprocess.run(
        [sys.executable, "benchmarks/bench_diff.py", "--against", "HEAD", "--sizes", "10",
         "--rounds", "1", "--no-postgres"],
        cwd=ROOT, env={**os.environ, "QMTL_BENCH_RESULTS": str(tmp_path)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    result = json.loads((tmp_path / "diff_against.json").read_text())
    assert result["revision"] == "HEAD"
    ((backend, nodes, runs, *figures),) = result["rows"]
    assert (backend, nodes, runs) == ("sqlite in-process", 10, 30)
    assert all(value > 0 for value in figures), figures
    assert "### Cold diff: this checkout vs HEAD" in run.stdout


def test_bench_diff_names_a_revision_git_does_not_know(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "benchmarks/bench_diff.py", "--against", "no-such-rev", "--sizes", "10"],
        cwd=ROOT, env={**os.environ, "QMTL_BENCH_RESULTS": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0
    assert "--against no-such-rev: git archive failed" in run.stderr
