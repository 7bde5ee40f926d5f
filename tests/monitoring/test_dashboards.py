"""Generated Grafana dashboards: importable anywhere, every query valid and on-catalogue."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from qmtl.foundation.catalogue import PROMETHEUS_BUILTINS, metric_names
from qmtl.monitoring.promql import grafana_expr, referenced_metrics, selectors_of
from qmtl.monitoring.render import REPO_ROOT, render
from qmtl.testing import kube

from .conftest import run_tool
from .test_rules import recording_rule_names

DASHBOARDS = sorted((REPO_ROOT / "dashboards").glob("*.json"))
REQUIRED = {
    "qmtl-queues-gc", "qmtl-dagmanager-diff", "qmtl-gateway", "qmtl-sdk-nodes",
    "qmtl-backfill", "qmtl-worldservice-apply", "qmtl-cross-context", "qmtl-slo",
}  # fmt: skip


def panel_exprs(dashboard: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def test_required_dashboards_exist_with_unique_uids() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert set(uids) == REQUIRED
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_importable_on_any_grafana(path: Path) -> None:
    """uid, title, schema, and a Prometheus datasource variable used by every panel."""
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]


def test_the_documented_panels_are_present() -> None:
    """Queue/GC on orphan_queue_total; apply success rate, freshness, ACK latency."""
    by_uid = {json.loads(p.read_text())["uid"]: json.loads(p.read_text()) for p in DASHBOARDS}
    queues = " ".join(e for _, e in panel_exprs(by_uid["qmtl-queues-gc"]))
    assert "orphan_queue_total" in queues and "gc_last_run_timestamp" in queues
    titles = [t for t, _ in panel_exprs(by_uid["qmtl-worldservice-apply"])]
    assert any("success rate" in t.lower() for t in titles)
    assert any("freshness" in t.lower() for t in titles)
    assert any("ack latency" in t.lower() for t in titles)


def test_every_panel_query_parses_in_promtool(promtool: str, tmp_path: Path) -> None:
    """Each expression becomes a throwaway recording rule that promtool must accept."""
    rules = []
    for path in DASHBOARDS:
        for index, (_title, expr) in enumerate(panel_exprs(json.loads(path.read_text()))):
            rules.append(
                {
                    "record": f"dashboard:{path.stem.replace('-', '_')}:q{index}",
                    "expr": grafana_expr(expr),
                }
            )
    rule_file = tmp_path / "panels.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = run_tool([promtool, "check", "rules", str(rule_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_broken_query_is_caught_by_promtool(promtool: str, tmp_path: Path) -> None:
    rule_file = tmp_path / "bad.yml"
    rule_file.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [{"record": "a:b:c", "expr": "rate(x[5m]"}]}]}
        )
    )
    assert run_tool([promtool, "check", "rules", str(rule_file)]).returncode != 0


def test_panels_use_only_catalogue_metrics() -> None:
    allowed = metric_names() | PROMETHEUS_BUILTINS | recording_rule_names()
    for path in DASHBOARDS:
        for title, expr in panel_exprs(json.loads(path.read_text())):
            unknown = referenced_metrics(expr) - allowed
            assert not unknown, f"{path.name} panel {title!r} uses {unknown}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_selects_qmtl_series_through_the_dashboard_variables(path: Path) -> None:
    """In a Prometheus shared with other applications a bare metric name would chart
    their series too: every catalogue metric a panel reads carries a job matcher (the
    $job variable, or a component selector) and, per instance, $instance."""
    catalogue = metric_names()
    for title, expr in panel_exprs(json.loads(path.read_text())):
        for metric in referenced_metrics(expr) & catalogue:
            for matchers in selectors_of(expr, metric):
                assert "job=" in matchers or "job=~" in matchers, (path.name, title, expr)
        # Rates follow the dashboard's resolution; only error-budget panels read fixed
        # windows of days (the SLO period).
        if "rate(" in expr and not any(":" in m for m in referenced_metrics(expr)):
            assert "$__rate_interval" in expr or re.search(r"\[\d+d\]", expr), (
                path.name,
                title,
                expr,
            )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_have_job_and_instance_variables_and_link_to_each_other(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= set(variables)
    assert 'job=~"$job"' in variables["instance"]["query"]["query"]
    assert variables["job"]["query"]["query"].startswith("label_values(up{job")
    assert dashboard["links"][0]["type"] == "dashboards" and dashboard["links"][0]["tags"] == [
        "qmtl"
    ]


def test_apply_runs_are_annotations() -> None:
    apply = json.loads((REPO_ROOT / "dashboards" / "qmtl-worldservice-apply.json").read_text())
    names = [a["name"] for a in apply["annotations"]["list"]]
    assert "Apply runs" in names
    run = next(a for a in apply["annotations"]["list"] if a["name"] == "Apply runs")
    assert (
        "world_apply_run_total" in run["target"]["expr"]
        and "{{run_id}}" in run["target"]["titleFormat"]
    )


def test_a_cluster_variable_when_the_config_asks_for_it() -> None:
    from qmtl.monitoring.render import render

    dashboards = render({"showMultiCluster": True}).dashboards
    gateway = dashboards["qmtl-gateway.json"]
    assert [v["name"] for v in gateway["templating"]["list"]][:2] == ["datasource", "cluster"]
    assert all(
        'cluster=~"$cluster"' in t["expr"]
        for p in gateway["panels"]
        for t in p["targets"]
        if "$instance" in t["expr"]
    )


def test_every_dashboard_type_checks_against_grafana_schema() -> None:
    """tsc --noEmit of each dashboard as @grafana/schema's Dashboard (see
    qmtl.testing.kube for the two fields we allow beyond it, and why)."""
    assert kube.check_dashboards(render().dashboards) == []


def test_the_grafana_check_catches_what_grafana_would_not_load() -> None:
    dashboard = copy.deepcopy(next(iter(render().dashboards.values())))
    dashboard["templating"]["list"][0]["current"] = {}  # a selection without text/value
    dashboard["panels"][0]["gridPos"]["width"] = 12  # not a gridPos field
    problems = kube.check_dashboards({"broken.json": dashboard})
    assert any("current" in p or "text" in p for p in problems), problems
    assert any("width" in p for p in problems), problems
