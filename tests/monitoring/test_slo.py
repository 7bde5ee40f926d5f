"""SLO objects in the mixin config: what they render and how a wrong one is refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qmtl.monitoring.render import MONITORING_DIR, MonitoringError, render

SLOS = {
    "submission_availability": "GatewayErrorBudgetBurn",
    "diff_success": "DiffErrorBudgetBurn",
    "submission_latency": "GatewayLatencyBudgetBurn",
}


def _slo_alerts(overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    groups = render(overrides).alerts["groups"]
    return [r for g in groups if g["name"] == "qmtl-slo" for r in g["rules"]]


def test_each_slo_renders_a_page_and_a_ticket() -> None:
    rules = _slo_alerts()
    pairs = sorted((r["alert"], r["labels"]["severity"], r["labels"]["slo"]) for r in rules)
    expected = sorted(
        (alert, severity, slo)
        for slo, alert in SLOS.items()
        for severity in ("critical", "warning")
    )
    assert pairs == expected
    page = next(
        r
        for r in rules
        if r["alert"] == "GatewayErrorBudgetBurn" and r["labels"]["severity"] == "critical"
    )
    # SRE workbook factors against a 0.1 % budget, each pair guarded by a minimum of events.
    for long, short, factor in (("1h", "5m", "14.4"), ("6h", "30m", "6")):
        assert (
            f'slo:sli_error:ratio_rate{long}{{slo="submission_availability"}} > ({factor} * 0.001)'
            in page["expr"]
        )
        assert (
            f'slo:sli_error:ratio_rate{short}{{slo="submission_availability"}} > ({factor} * 0.001)'
            in page["expr"]
        )
    assert 'slo:sli_total:rate1h{slo="submission_availability"} * 3600 >= 30' in page["expr"]
    assert "within 5 days" in page["annotations"]["description"]


def test_recording_rules_cover_every_window_of_every_slo() -> None:
    groups = {g["name"]: g["rules"] for g in render().rules["groups"]}
    for slo in SLOS:
        records = {r["record"] for r in groups[f"qmtl-slo-{slo}"]}
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
            assert f"slo:sli_error:ratio_rate{window}" in records
            assert f"slo:sli_total:rate{window}" in records


def test_an_slo_added_in_config_gets_rules_alerts_and_a_dashboard() -> None:
    extra = {
        "alert": "WorldApplyBudgetBurn",
        "area": "worldservice",
        "title": "World applies",
        "objective": 0.95,
        "description": "Apply runs that succeed.",
        "errorQuery": "sum by (job) (rate(world_apply_failure_total[%(window)s]))",
        "totalQuery": 'sum by (job) (rate(world_apply_run_total{status="started"}[%(window)s]))',
        "windows": {
            "page": [{"long": "1h", "short": "5m", "factor": 10}],
            "ticket": [{"long": "6h", "short": "30m", "factor": 2}],
        },
    }
    overrides = {"slos": {"world_apply": extra}}
    rendered = render(overrides)
    records = {
        r["record"]
        for g in rendered.rules["groups"]
        if g["name"] == "qmtl-slo-world_apply"
        for r in g["rules"]
    }
    assert records == {
        f"slo:sli_{kind}{w}"
        for kind in ("error:ratio_rate", "total:rate")
        for w in ("5m", "30m", "1h", "6h")
    }
    alerts = [r for r in _slo_alerts(overrides) if r["labels"]["slo"] == "world_apply"]
    assert {r["labels"]["severity"] for r in alerts} == {"critical", "warning"}
    assert any("(10 * 0.05)" in r["expr"] for r in alerts)
    panels = [p["title"] for p in rendered.dashboards["qmtl-slo.json"]["panels"]]
    assert "World applies: error budget left (30d)" in panels


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "objective above 1": (
        {"slos": {"diff_success": {"objective": 99.9}}},
        "SLO diff_success: objective must be within (0, 1)",
    ),
    "objective of 1": (
        {"slos": {"diff_success": {"objective": 1}}},
        "SLO diff_success: objective must be within (0, 1)",
    ),
    "missing field": (
        {"slos": {"diff_success": {"totalQuery": None}}},
        "SLO diff_success: totalQuery: required field missing",
    ),
    "no window placeholder": (
        {"slos": {"diff_success": {"errorQuery": "sum(rate(diff_failures_total[5m]))"}}},
        "SLO diff_success: errorQuery and totalQuery must contain %(window)s",
    ),
    "unknown metric": (
        {"slos": {"diff_success": {"errorQuery": "sum by (job) (rate(diff_errors_total[%(window)s]))"}}},
        "SLO diff_success: errorQuery: unknown metric diff_errors_total",
    ),
    "short window not shorter": (
        {"slos": {"diff_success": {"windows": {
            "page": [{"long": "5m", "short": "1h", "factor": 14.4}],
            "ticket": [{"long": "1d", "short": "2h", "factor": 3}],
        }}}},
        "SLO diff_success: windows: every short window must be shorter than its long window",
    ),
    "long windows out of order": (
        {"slos": {"diff_success": {"windows": {
            "page": [{"long": "1d", "short": "2h", "factor": 14.4}],
            "ticket": [{"long": "1h", "short": "5m", "factor": 3}],
        }}}},
        "SLO diff_success: windows: the long windows must increase",
    ),
    "bad window unit": (
        {"sloPolicy": {"page": [{"long": "1hour", "short": "5m", "factor": 14.4}]}},
        "window 1hour: use s, m, h, d or w",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_slo_is_refused_with_one_line(case: str) -> None:
    overrides, message = BAD[case]
    with pytest.raises(MonitoringError) as caught:
        render(overrides)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text, text


def _render_fork(
    tmp_path: Path, old: str, new: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Copy the mixin, replace the first ``old`` in its config, render it to ``out``."""
    fork = tmp_path / "mixin"
    shutil.copytree(
        MONITORING_DIR, fork, symlinks=False, ignore=shutil.ignore_patterns("dist", "samples")
    )
    config = fork / "config.libsonnet"
    assert old in config.read_text()
    config.write_text(config.read_text().replace(old, new, 1))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "qmtl.monitoring", "--mixin", str(fork), "--output", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result, out


def test_cli_refuses_a_broken_fork_and_writes_nothing(tmp_path: Path) -> None:
    result, out = _render_fork(tmp_path, "objective: 0.999,", "objective: 99.9,")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SLO submission_availability: objective must be within (0, 1)" in lines[0]
    assert not out.exists() or not any(out.rglob("*"))


def test_cli_renders_a_fork(tmp_path: Path) -> None:
    result, out = _render_fork(tmp_path, "objective: 0.99,", "objective: 0.95,")
    assert result.returncode == 0, result.stderr
    assert "(14.4 * 0.05)" in (out / "alert_rules.yml").read_text()
    assert (out / "dashboards" / "qmtl-slo.json").is_file()


def test_bucket_bounds_in_slo_queries_match_what_the_exporter_writes() -> None:
    """prometheus_client writes le="150.0"; a selector on le="150" would match nothing."""
    import re

    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from qmtl.foundation.catalogue import MS_BUCKETS

    registry = CollectorRegistry()
    Histogram("probe_ms", "probe", buckets=MS_BUCKETS, registry=registry)
    exposed = set(re.findall(r'le="([^"]+)"', generate_latest(registry).decode()))
    slos = render().rules["groups"]
    selectors = {
        bound
        for g in slos
        if g["name"].startswith("qmtl-slo-")
        for r in g["rules"]
        for bound in re.findall(r'le="([^"]+)"', r["expr"])
    }
    assert selectors, "the latency SLO selects a bucket"
    assert selectors <= exposed, f"{sorted(selectors - exposed)} is not a bound the exporter writes"
