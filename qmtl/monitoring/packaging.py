"""Package the ``seamless_v2_observability`` bundle as a Helm chart and a Terraform module.

Inputs: the Jsonnet bundle (``operations/monitoring/seamless_v2.jsonnet``) and the
static chart/module sources under ``operations/monitoring/packaging/``.  Outputs
(deterministic, committed, checked for drift by ``--check``):

* ``dist/helm/<bundle>/``      Chart.yaml, values.yaml, values-sample.yaml, templates/
* ``dist/terraform/<bundle>/`` module on the kubernetes provider + terraform.tfvars.example
* ``samples/<bundle>.helm-values.yaml`` and ``samples/<bundle>.terraform.tfvars``

Everything is first written to a temporary directory and only moved into place when
complete, so a failure never leaves partial output behind.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmtl.monitoring.render import (
    MONITORING_DIR,
    REPO_ROOT,
    MonitoringError,
    dump_json,
    dump_yaml,
    evaluate,
)

__all__ = [
    "CONFIGMAP_LIMIT_BYTES",
    "DEFAULT_BUNDLE",
    "DEFAULT_OUTPUT",
    "DEFAULT_SAMPLES",
    "Bundle",
    "build_helm",
    "build_samples",
    "build_terraform",
    "dns1123",
    "ensure_writable",
    "package",
]

DEFAULT_BUNDLE = MONITORING_DIR / "seamless_v2.jsonnet"
DEFAULT_OUTPUT = REPO_ROOT / "operations" / "monitoring" / "dist"
DEFAULT_SAMPLES = REPO_ROOT / "operations" / "monitoring" / "samples"
SOURCES = MONITORING_DIR / "packaging"
#: Kubernetes rejects ConfigMaps whose data exceeds 1 MiB; keep room for metadata.
CONFIGMAP_LIMIT_BYTES = 1024 * 1024 - 16 * 1024
_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def dns1123(text: str) -> str:
    """Lower-case, non-alphanumerics to '-', trimmed: the same rule the chart applies."""
    return re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")


@dataclass(frozen=True)
class Bundle:
    """A validated monitoring bundle: dashboards (file name -> JSON) and recording rules."""

    name: str
    version: str
    description: str
    dashboards: dict[str, dict[str, Any]]
    alerting_rules: dict[str, Any]
    recording_rules: dict[str, Any]

    @classmethod
    def load(cls, path: Path = DEFAULT_BUNDLE) -> Bundle:
        data = evaluate(Path(path))
        missing = {"name", "dashboards", "alertingRules", "recordingRules"} - set(data)
        if missing:
            raise MonitoringError(f"{path}: bundle lacks field(s) {', '.join(sorted(missing))}")
        bundle = cls(
            name=str(data["name"]),
            version=str(data.get("version", "0.1.0")),
            description=str(data.get("description", "")),
            dashboards=dict(data["dashboards"]),
            alerting_rules=dict(data["alertingRules"]),
            recording_rules=dict(data["recordingRules"]),
        )
        bundle.validate(str(path))
        return bundle

    def validate(self, where: str = "bundle") -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise MonitoringError(f"{where}: bundle name {self.name!r} must be [a-z0-9_]+")
        uids: dict[str, str] = {}
        for file_name, dashboard in self.dashboards.items():
            if not file_name.endswith(".json") or not _KEY_RE.match(file_name):
                raise MonitoringError(
                    f"{where}: dashboard file name {file_name!r} must end in .json and use only "
                    "letters, digits, '-', '_' and '.' (it becomes a ConfigMap key)"
                )
            if not _DNS1123_LABEL.match(dns1123(file_name.removesuffix(".json"))):
                raise MonitoringError(f"{where}: {file_name!r} gives no valid resource name")
            uid = dashboard.get("uid")
            if not uid or not dashboard.get("title"):
                raise MonitoringError(f"{where}: dashboard {file_name} needs a uid and a title")
            if uid in uids:
                raise MonitoringError(
                    f"{where}: duplicate dashboard uid {uid!r} in {uids[uid]} and {file_name}; "
                    "Grafana would overwrite one with the other"
                )
            uids[uid] = file_name
            size = len(dump_json(dashboard).encode())
            if size > CONFIGMAP_LIMIT_BYTES:
                raise MonitoringError(
                    f"{where}: dashboard {file_name} is {size} bytes, too large for a ConfigMap "
                    f"(limit {CONFIGMAP_LIMIT_BYTES} bytes); split it into smaller dashboards"
                )
        for field, rules in (("alertingRules", self.alerting_rules),
                             ("recordingRules", self.recording_rules)):  # fmt: skip
            if not isinstance(rules.get("groups"), list):
                raise MonitoringError(f"{where}: {field} must be {{groups: [...]}}")

    def dashboard_texts(self) -> dict[str, str]:
        return {name: dump_json(d) for name, d in sorted(self.dashboards.items())}


# --------------------------------------------------------------------------- Helm


def _chart_yaml(bundle: Bundle) -> str:
    return dump_yaml(
        {
            "apiVersion": "v2",
            "name": bundle.name,
            "description": bundle.description,
            "type": "application",
            "version": bundle.version,
            "appVersion": bundle.version,
            "keywords": ["qmtl", "grafana", "prometheus", "monitoring"],
        }
    )


def _values_yaml(bundle: Bundle) -> str:
    dashboards = [{"name": n, "json": t} for n, t in bundle.dashboard_texts().items()]
    return "".join(
        [
            "# Default values of the seamless_v2_observability chart.\n",
            "# Generated by scripts/package_monitoring_bundle.py; do not edit.\n\n",
            "# Resource names are <fullnameOverride or release name>-<dashboard>.\n",
            dump_yaml({"fullnameOverride": "", "namespace": "", "commonLabels": {}}),
            "\n# One ConfigMap per dashboard, labelled for the Grafana dashboard sidecar.\n",
            "# Add dashboards with grafanaDashboards.extraDashboards: they are appended to\n",
            "# `dashboards`. Set `dashboards` only to replace the upstream list entirely.\n",
            dump_yaml(
                {
                    "grafanaDashboards": {
                        "enabled": True,
                        "labelKey": "grafana_dashboard",
                        "labelValue": "1",
                        "extraDashboards": [],
                        "dashboards": dashboards,
                    }
                }
            ),
            "\n# PrometheusRule (Prometheus Operator) with the bundle's alerting and recording\n",
            "# rules, each list with its own toggle. namespace defaults to the release namespace;\n",
            "# labels must match your Prometheus's ruleSelector.\n",
            dump_yaml(
                {
                    "prometheusRule": {
                        "enabled": True,
                        "namespace": "",
                        "labels": {},
                        "alerts": {"enabled": True, "groups": bundle.alerting_rules["groups"]},
                        "recordingRules": {
                            "enabled": True,
                            "groups": bundle.recording_rules["groups"],
                        },
                    }
                }
            ),
        ]
    )


def _strict(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object schema that refuses keys it does not name (a typo is an error)."""
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DASHBOARD_ENTRY = _strict(
    {
        "name": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+\.json$"},
        "uid": {"type": "string", "minLength": 1},
        "title": {"type": "string"},
        "json": {"type": "string", "minLength": 2},
    },
    required=["json"],
)
_RULE_GROUPS = {
    "type": "array",
    "items": {"type": "object", "required": ["name", "rules"],
              "properties": {"name": {"type": "string"}, "rules": {"type": "array"}}},
}  # fmt: skip


def _values_schema() -> dict[str, Any]:
    """values.schema.json: Helm checks every values file against it before rendering."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "seamless_v2_observability values",
        **_strict(
            {
                "fullnameOverride": {"type": "string"},
                "namespace": {"type": "string"},
                "commonLabels": _STRING_MAP,
                "grafanaDashboards": _strict(
                    {
                        "enabled": {"type": "boolean"},
                        "labelKey": {"type": "string", "minLength": 1},
                        "labelValue": {"type": "string"},
                        "extraDashboards": {"type": "array", "items": _DASHBOARD_ENTRY},
                        "dashboards": {"type": "array", "items": _DASHBOARD_ENTRY},
                    }
                ),
                "prometheusRule": _strict(
                    {
                        "enabled": {"type": "boolean"},
                        "namespace": {"type": "string"},
                        "labels": _STRING_MAP,
                        "alerts": _strict({"enabled": {"type": "boolean"}, "groups": _RULE_GROUPS}),
                        "recordingRules": _strict(
                            {"enabled": {"type": "boolean"}, "groups": _RULE_GROUPS}
                        ),
                    }
                ),
            }
        ),
    }


SAMPLE_HELM_VALUES = """\
# Production overrides for the seamless_v2_observability chart, for CI pipelines:
#   helm upgrade --install seamless-observability <chart> -f values-sample.yaml
# The default dashboards from values.yaml are kept; this file does not set
# grafanaDashboards.dashboards (that would replace them).
namespace: qmtl-monitoring
commonLabels:
  team: qmtl
grafanaDashboards:
  enabled: true
  # Appended to the default dashboards; an entry named like a default replaces it.
  # Two entry shapes are accepted:
  # {name, json} (name = the file name), or the upstream {uid, title, json}
  # (file name "<uid>.json"). For example:
  # extraDashboards:
  #   - name: my-team.json
  #     json: |-
  #       {"uid": "my-team", "title": "My team", "panels": []}
  #   - uid: trading-desk
  #     title: Trading desk
  #     json: |-
  #       {"uid": "trading-desk", "title": "Trading desk", "panels": []}
  extraDashboards: []
prometheusRule:
  enabled: true
  # Must match the namespace your Prometheus Operator watches for rules.
  namespace: monitoring
  labels:
    release: kube-prometheus-stack
  alerts:
    enabled: true
  recordingRules:
    enabled: true
"""


def build_helm(bundle: Bundle, output_dir: Path) -> Path:
    """Write the chart to ``output_dir/<bundle.name>/`` and return that path."""
    chart = Path(output_dir) / bundle.name
    chart.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SOURCES / "helm", chart, dirs_exist_ok=True)
    (chart / "Chart.yaml").write_text(_chart_yaml(bundle))
    (chart / "values.yaml").write_text(_values_yaml(bundle))
    (chart / "values.schema.json").write_text(dump_json(_values_schema()))
    (chart / "values-sample.yaml").write_text(SAMPLE_HELM_VALUES)
    return chart


# ---------------------------------------------------------------------- Terraform

SAMPLE_TFVARS = """\
# Copy to terraform.tfvars in a root module that declares these variables (root/ does:
# cd root && cp ../terraform.tfvars.example terraform.tfvars). Every variable is optional.
namespace   = "qmtl-monitoring"
name_prefix = "seamless-observability"

labels = {
  team = "qmtl"
}

enable_dashboards      = true
enable_prometheus_rule = true
enable_alerts          = true
enable_recording_rules = true

prometheus_rule_namespace = "monitoring"

prometheus_rule_labels = {
  release = "kube-prometheus-stack"
}

# Added to the bundled dashboards (one named like a bundled dashboard replaces it): a map
# of file name => dashboard JSON, or a list in the Helm chart's shape, e.g.
# [{ uid = "trading-desk", title = "Trading desk", json = "..." }] (file name
# "<uid>.json" when name is absent). json is the dashboard JSON as a string.
extra_dashboards = {}
"""

TERRAFORM_README = """\
# {name} (Terraform)

Generated by `python scripts/package_monitoring_bundle.py`; do not edit.

Creates one ConfigMap per Grafana dashboard (labelled `grafana_dashboard = "1"` for the
Grafana sidecar) and, optionally, a `PrometheusRule` holding the alerting and recording
rules, on the `hashicorp/kubernetes` provider. The objects are the same as the Helm
chart's for the same settings.

Run it from `root/`, a root module that declares every variable and passes it on, so the
values of `terraform.tfvars` take effect:

```bash
cd root
cp ../terraform.tfvars.example terraform.tfvars
terraform init
terraform apply
```

From your own workspace, call the module with the variables you set (a module block
without them ignores `terraform.tfvars`):

```hcl
module "seamless_monitoring" {{
  source    = "../../operations/monitoring/dist/terraform/{name}"
  namespace = var.namespace
  # ... every variable you put in terraform.tfvars, as in root/main.tf
}}
```

Variables: `namespace`, `name_prefix`, `labels`, `enable_dashboards`,
`dashboard_label_key`, `dashboard_label_value`, `extra_dashboards`,
`enable_prometheus_rule`, `enable_alerts`, `enable_recording_rules`,
`prometheus_rule_namespace`, `prometheus_rule_labels` (see `terraform.tfvars.example`).
`modules/content` computes every object without a provider and checks every input, so
it can be evaluated offline.
"""


def build_terraform(bundle: Bundle, output_dir: Path) -> Path:
    """Write the module to ``output_dir/<bundle.name>/`` and return that path."""
    module = Path(output_dir) / bundle.name
    module.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SOURCES / "terraform", module, dirs_exist_ok=True)
    dashboards = module / "dashboards"
    dashboards.mkdir(exist_ok=True)
    for name, text in bundle.dashboard_texts().items():
        (dashboards / name).write_text(text)
    (module / "alert_rules.json").write_text(dump_json(bundle.alerting_rules))
    (module / "recording_rules.json").write_text(dump_json(bundle.recording_rules))
    # The root module declares exactly the module's variables.
    shutil.copyfile(module / "variables.tf", module / "root" / "variables.tf")
    (module / "terraform.tfvars.example").write_text(SAMPLE_TFVARS)
    (module / "README.md").write_text(TERRAFORM_README.format(name=bundle.name))
    return module


def build_samples(bundle: Bundle, samples_dir: Path) -> Path:
    samples = Path(samples_dir)
    samples.mkdir(parents=True, exist_ok=True)
    (samples / f"{bundle.name}.helm-values.yaml").write_text(SAMPLE_HELM_VALUES)
    (samples / f"{bundle.name}.terraform.tfvars").write_text(SAMPLE_TFVARS)
    return samples


# ----------------------------------------------------------------- orchestration


def _diff_trees(expected: Path, actual: Path) -> list[str]:
    """Relative paths that differ between two trees (missing, extra or changed)."""
    problems: list[str] = []
    exp = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()}
    act = (
        {p.relative_to(actual) for p in actual.rglob("*") if p.is_file()}
        if actual.exists()
        else set()
    )
    for rel in sorted(exp - act):
        problems.append(f"missing: {actual / rel}")
    for rel in sorted(act - exp):
        problems.append(f"stale (no longer generated): {actual / rel}")
    for rel in sorted(exp & act):
        if not filecmp.cmp(expected / rel, actual / rel, shallow=False):
            problems.append(f"out of date: {actual / rel}")
    return problems


def ensure_writable(directory: Path) -> None:
    """Fail before touching anything when a destination cannot be written."""
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise MonitoringError(
            f"cannot write packaged bundle to {directory}: {probe} is not a writable directory; "
            "choose a writable --output directory"
        )


def _replace_tree(new: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    backup = target.with_name(target.name + ".old")
    if backup.exists():
        shutil.rmtree(backup)
    if target.exists():
        target.rename(backup)
    shutil.move(str(new), str(target))
    if backup.exists():
        shutil.rmtree(backup)


def package(
    bundle_path: Path = DEFAULT_BUNDLE,
    output: Path = DEFAULT_OUTPUT,
    samples: Path = DEFAULT_SAMPLES,
    *,
    formats: tuple[str, ...] = ("helm", "terraform"),
    check: bool = False,
) -> list[str]:
    """Build the artefacts; with ``check`` compare instead of writing.

    Returns the list of drift problems (always empty when writing).  Raises
    :class:`MonitoringError` on bad input or an unwritable destination.
    """
    bundle = Bundle.load(Path(bundle_path))
    builders = {"helm": build_helm, "terraform": build_terraform}
    with tempfile.TemporaryDirectory(prefix="qmtl-bundle-") as tmp_name:
        tmp = Path(tmp_name)
        targets: list[tuple[Path, Path]] = []
        for fmt in formats:
            staged = builders[fmt](bundle, tmp / fmt)
            targets.append((staged, Path(output) / fmt / bundle.name))
        staged_samples = build_samples(bundle, tmp / "samples")
        sample_targets = [
            (staged_samples / f.name, Path(samples) / f.name)
            for f in sorted(staged_samples.iterdir())
        ]
        if check:
            problems: list[str] = []
            for staged, target in targets:
                problems += _diff_trees(staged, target)
            for staged_file, target_file in sample_targets:
                if not target_file.is_file():
                    problems.append(f"missing: {target_file}")
                elif not filecmp.cmp(staged_file, target_file, shallow=False):
                    problems.append(f"out of date: {target_file}")
            return problems
        for _, target in [*targets, (None, Path(samples) / "x")]:
            ensure_writable(target.parent)
        try:
            for staged, target in targets:
                _replace_tree(staged, target)
            Path(samples).mkdir(parents=True, exist_ok=True)
            for staged_file, target_file in sample_targets:
                shutil.copyfile(staged_file, target_file)
        except OSError as exc:
            raise MonitoringError(
                f"cannot write packaged bundle to {exc.filename or output}: {exc.strerror}; "
                "choose a writable --output directory"
            ) from None
    return []
