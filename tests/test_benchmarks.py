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
@pytest.mark.timeout(900)  # every benchmark with tiny sizes: several stacks in a row
def test_run_all_quick_runs_every_benchmark(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "benchmarks/run_all.py", "--quick"],
        cwd=ROOT, env={**os.environ, "QMTL_BENCH_RESULTS": str(tmp_path)},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    report = (tmp_path / "REPORT.md").read_text()
    for heading in ("### Diff latency", "phase by phase", "### SDK", "### Gateway vs its floor",
                    "### Gateway vs the floor's front calling the same DAG Manager", "### /metrics",
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
    phases = json.loads((tmp_path / "diff_phases.json").read_text())["sqlite + in-process"]
    timed = phases["timers on"]["phases_us"]
    round_trip = sum(phases["timers on"]["samples_us"]) / len(phases["timers on"]["samples_us"])
    parts = ("plan (parse, hash, name)", "store lookup", "queue creation", "store commit")
    assert all(timed[p] > 0 for p in parts), timed  # every phase of the diff was timed
    assert sum(timed[p] for p in parts) <= timed["diff"] <= timed["handler"] < round_trip, timed
    assert not (tmp_path / "history.csv").exists()  # a quick run is not history
    for name in ("diff", "diff_phases", "sdk", "gateway", "metrics", "replicas", "soak"):
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


def test_history_written_with_fewer_columns_gets_the_new_ones(tmp_path: Path) -> None:
    """An older history.csv keeps its rows under today's header; a newer one is refused."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    path = tmp_path / "history.csv"
    path.write_text("date,commit,gateway_p95_ms_32,failed\n2026-01-01T00:00Z,abc1234,99.5,\n")
    run_all.write_history_row(path, {"date": "2026-01-02T00:00Z", "commit": "def5678",
                                     "gateway_p95_ratio_vs_floor_32": "1.25"})  # fmt: skip
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(run_all.HISTORY_COLUMNS)
    old, new = (
        dict(zip(run_all.HISTORY_COLUMNS, line.split(","), strict=True)) for line in lines[1:]
    )
    assert (old["commit"], old["gateway_p95_ms_32"], old["gateway_p95_ratio_vs_floor_32"]) == (
        "abc1234", "99.5", "",
    )  # fmt: skip
    assert (new["commit"], new["gateway_p95_ratio_vs_floor_32"]) == ("def5678", "1.25")

    path.write_text("date,commit,from_the_future\n")
    with pytest.raises(SystemExit, match="from_the_future"):
        run_all.write_history_row(path, {"date": "x", "commit": "y"})
    assert path.read_text() == "date,commit,from_the_future\n"
