"""alert_rules.yml / recording_rules.yml: valid for Prometheus, unit-tested, documented."""

from __future__ import annotations

import re

import pytest
import yaml

from qmtl.foundation.catalogue import PROMETHEUS_BUILTINS, metric_names
from qmtl.monitoring.promql import referenced_metrics
from qmtl.monitoring.render import MONITORING_DIR, REPO_ROOT, alert_names, render

from .conftest import run_tool

DOCUMENTED_ALERTS = {
    "DiffDurationHigh", "DiffFailureRateHigh", "DiffThroughputLow", "NodeCacheMemoryHigh",
    "QueueCreateErrors", "SentinelGap", "OrphanQueuesGrowing", "QueueLagHigh",
    "GatewayLatencyHigh", "LostRequests", "GCSchedulerStall", "NodeSlowProcessing",
    "NodeFailures", "CrossContextCacheHit", "WorldApplyFailureDetected",
    "WorldApplyFailureRateHigh", "WorldAllocationSnapshotStale", "ControlBusApplyAckLatencyHigh",
}  # fmt: skip
BREAKER_ALERTS = {"KafkaAdminBreakerOpen", "DagClientBreakerOpen", "GraphStoreBreakerOpen"}
TESTS_DIR = MONITORING_DIR / "tests"


def load_alerts() -> list[dict]:
    data = yaml.safe_load((REPO_ROOT / "alert_rules.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_promtool_accepts_generated_rule_files(promtool: str) -> None:
    result = run_tool(
        [promtool, "check", "rules", "alert_rules.yml", "recording_rules.yml"], cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = len(load_alerts())
    assert f"SUCCESS: {alerts} rules found" in result.stdout


@pytest.mark.parametrize("name", sorted(p.name for p in TESTS_DIR.glob("*_test.yml")))
def test_promtool_unit_tests_pass(promtool: str, name: str) -> None:
    result = run_tool([promtool, "test", "rules", str(TESTS_DIR / name)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 1


def test_every_promtool_test_file_is_run() -> None:
    assert len(list(TESTS_DIR.glob("*_test.yml"))) >= 4


def test_promtool_unit_tests_can_fail(promtool: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A wrong expectation makes promtool fail, so the suite above is not vacuous."""
    text = (
        (TESTS_DIR / "alerts_test.yml")
        .read_text()
        .replace("(threshold 200 ms)", "(threshold 201 ms)")
    )
    text = text.replace("../../../alert_rules.yml", str(REPO_ROOT / "alert_rules.yml"))
    broken = tmp_path / "broken_test.yml"
    broken.write_text(text)
    result = run_tool([promtool, "test", "rules", str(broken)])
    assert result.returncode != 0
    assert "DiffDurationHigh" in result.stdout + result.stderr


def test_every_documented_and_breaker_alert_exists() -> None:
    rendered = render()
    assert set(alert_names(rendered)) >= DOCUMENTED_ALERTS | BREAKER_ALERTS
    # A name appears once per label set (SLO alerts: one page, one ticket; QmtlJobAbsent:
    # one per service), never twice.
    keys = [
        (r["alert"], tuple(sorted(r["labels"].items())))
        for g in rendered.alerts["groups"]
        for r in g["rules"]
    ]
    assert len(keys) == len(set(keys)), "duplicate alert name and labels"


def test_every_alert_has_firing_and_quiet_unit_cases() -> None:
    """Every (alert, severity) has a case where it fires, every alert one where it is
    quiet -- and the tests name no alert that does not exist."""
    tests = [
        case
        for path in sorted(TESTS_DIR.glob("*_test.yml"))
        for case in yaml.safe_load(path.read_text())["tests"]
    ]
    firing: set[tuple[str, str]] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            if not check.get("exp_alerts"):
                quiet.add(check["alertname"])
            for alert in check.get("exp_alerts") or []:
                assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}
                firing.add((check["alertname"], alert["exp_labels"]["severity"]))
    rules = {(rule["alert"], rule["labels"]["severity"]) for rule in load_alerts()}
    assert firing == rules, f"without a firing case: {rules - firing}; unknown: {firing - rules}"
    names = {name for name, _ in rules} - {"Watchdog"}  # always firing by design
    assert quiet == names, f"alerts without a quiet case: {names - quiet}"


def test_every_recording_rule_has_a_value_test() -> None:
    rules = yaml.safe_load((REPO_ROOT / "recording_rules.yml").read_text())
    records = {r["record"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((TESTS_DIR / "recording_rules_test.yml").read_text())["tests"]
    tested = set().union(
        *(referenced_metrics(t["expr"]) for case in tests for t in case.get("promql_expr_test", []))
    )
    assert records <= tested, f"no value test reads {sorted(records - tested)}"
    for record in records:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", record), record


@pytest.mark.parametrize("rule", load_alerts(), ids=lambda r: r["alert"])
def test_alert_conventions(rule: dict) -> None:
    """CamelCase name, severity, static summary, templated description, runbook section."""
    assert re.fullmatch(r"(?:[A-Z][a-z0-9]*|GC)+[A-Za-z0-9]*", rule["alert"])
    # "none": the Watchdog, which is for a dead-man's switch, never for a person.
    assert rule["labels"]["severity"] in {"critical", "warning", "info"} or (
        rule["alert"] == "Watchdog" and rule["labels"]["severity"] == "none"
    )
    annotations = rule["annotations"]
    assert "{{" not in annotations["summary"] and annotations["summary"].endswith(".")
    assert "{{ $labels." in annotations["description"] or "{{ $value" in annotations["description"]
    anchor = rule["alert"].lower()
    assert annotations["runbook_url"].endswith(f"runbooks.md#{anchor}")
    assert "for" in rule
    runbooks = (REPO_ROOT / "docs" / "runbooks.md").read_text()
    assert f"\n## {rule['alert']}\n" in runbooks, (
        f"docs/runbooks.md lacks a section for {rule['alert']}"
    )


def test_cross_context_is_critical_with_five_step_runbook() -> None:
    rule = next(r for r in load_alerts() if r["alert"] == "CrossContextCacheHit")
    assert rule["labels"]["severity"] == "critical"
    section = (REPO_ROOT / "docs" / "runbooks.md").read_text().split("## CrossContextCacheHit")[1]
    section = section.split("\n## ")[0]
    for step in range(1, 6):
        assert f"\n{step}. **" in section
    for command in (
        "qmtl ops cross-context show",
        "qmtl ops cache purge --node",
        "qmtl ops cross-context reset",
    ):
        assert command in section


def recording_rule_names() -> set[str]:
    rules = yaml.safe_load((REPO_ROOT / "recording_rules.yml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"]}


def test_alerts_and_rules_use_only_catalogue_metrics() -> None:
    allowed = metric_names() | PROMETHEUS_BUILTINS | recording_rule_names()
    rules = yaml.safe_load((REPO_ROOT / "recording_rules.yml").read_text())
    exprs = [r["expr"] for r in load_alerts()] + [
        r["expr"] for g in rules["groups"] for r in g["rules"]
    ]
    for expr in exprs:
        unknown = referenced_metrics(expr) - allowed
        assert not unknown, f"{expr!r} uses metrics outside the catalogue: {unknown}"


def test_metric_extraction_sees_names() -> None:
    """Guard for the check above: it finds names and ignores syntax."""
    found = referenced_metrics(
        'sum by (job) (rate(a_total{x="y"}[5m])) / on (job) b > 0 and c offset 10m unless d'
    )
    assert found == {"a_total", "b", "c", "d"}


def test_short_windows_render_from_same_source() -> None:
    """The e2e suite gets short windows by overriding _config, not by copying rules."""
    fast = render({"rateWindow": "30s", "for": {"DiffDurationHigh": "10s"}})
    rule = next(
        r for g in fast.alerts["groups"] for r in g["rules"] if r["alert"] == "DiffDurationHigh"
    )
    assert rule["for"] == "10s"
    assert set(alert_names(fast)) == set(alert_names(render()))


def test_promql_expression_tests_use_the_shipped_alert_expressions() -> None:
    """promtool only checks firing alerts; expression tests (for 'not even pending' cases)
    must test the very expression alert_rules.yml ships, not a copy that drifted."""
    shipped = yaml.safe_load((REPO_ROOT / "alert_rules.yml").read_text())
    exprs = {r["expr"].strip() for g in shipped["groups"] for r in g["rules"]}
    tests = yaml.safe_load((MONITORING_DIR / "tests" / "alerts_test.yml").read_text())["tests"]
    checked = [case["expr"].strip() for test in tests for case in test.get("promql_expr_test", [])]
    assert checked, "the suite has expression tests"
    assert all(expr in exprs for expr in checked)


#: Alerts that by design do not depend on QMTL's series being there.
NOT_SELECTED = {"Watchdog", "QmtlJobAbsent"}


def foreign_cases() -> dict[str, object]:
    """Every firing case of the unit tests, replayed with all its series relabelled to
    another application's job (same metric names): every alert must stay quiet."""
    import copy

    out: dict[str, object] = {"rule_files": [], "evaluation_interval": "1m", "tests": []}
    rule_files: set[str] = set()
    for path in sorted(TESTS_DIR.glob("*_test.yml")):
        data = yaml.safe_load(path.read_text())
        rule_files.update(str((path.parent / f).resolve()) for f in data["rule_files"])
        for case in data["tests"]:
            checks = [
                {**check, "exp_alerts": []}
                for check in case.get("alert_rule_test", [])
                if check.get("exp_alerts") and check["alertname"] not in NOT_SELECTED
            ]
            if not checks:
                continue
            foreign = copy.deepcopy(case)
            foreign["name"] = f"{case['name']} -- as another job's series"
            for series in foreign.get("input_series", []):
                series["series"] = re.sub(r'job="[^"]*"', 'job="billing-api"', series["series"])
            foreign["alert_rule_test"] = checks
            foreign.pop("promql_expr_test", None)
            out["tests"].append(foreign)  # type: ignore[attr-defined]
    out["rule_files"] = sorted(rule_files)
    return out


def test_no_alert_fires_on_another_applications_same_named_series(promtool: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In a Prometheus shared with other applications, a "billing-api" job exporting
    diff_requests_total, node_process_failure_total, queue_lag_seconds, ... must page no
    QMTL alert: every firing case, relabelled to that job, is quiet."""
    cases = foreign_cases()
    tested = {c["alertname"] for t in cases["tests"] for c in t["alert_rule_test"]}  # type: ignore[index]
    assert tested == {r["alert"] for r in load_alerts()} - NOT_SELECTED
    path = tmp_path / "foreign_test.yml"
    path.write_text(yaml.safe_dump(cases))
    result = run_tool([promtool, "test", "rules", str(path)])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_the_foreign_job_check_can_fail(promtool: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Relabelled to a QMTL job instead, the same cases fire: the check above is not
    vacuous (it would catch a rule that lost its selector)."""
    cases = foreign_cases()
    text = yaml.safe_dump(cases).replace('job=\\"billing-api\\"', 'job=\\"qmtl-gateway\\"')
    text = text.replace('job="billing-api"', 'job="qmtl-gateway"')
    path = tmp_path / "not_foreign_test.yml"
    path.write_text(text)
    result = run_tool([promtool, "test", "rules", str(path)])
    assert result.returncode != 0 and "GatewayLatencyHigh" in result.stdout + result.stderr
