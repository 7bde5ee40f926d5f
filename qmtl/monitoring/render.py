"""Render the monitoring mixin into the committed artefacts.

``operations/monitoring/main.jsonnet`` is the single source; this module evaluates it
with the PyPI ``jsonnet`` module and writes:

* ``alert_rules.yml`` and ``recording_rules.yml`` at the repository root,
* ``dashboards/*.json``.

:func:`render` accepts ``_config`` overrides so tests and ``qmtl up`` can get short
windows from the very same source instead of a hand-copied rules file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "GENERATED_HEADER",
    "MONITORING_DIR",
    "REPO_ROOT",
    "MonitoringError",
    "Rendered",
    "alert_names",
    "dump_json",
    "dump_yaml",
    "render",
    "rendered_files",
]

#: The Jsonnet mixin.  In a checkout ``qmtl/monitoring/mixin`` is a symlink to
#: ``operations/monitoring`` (where operators find and edit it); a wheel carries the files
#: themselves, so an installed ``qmtl up`` renders its rules from the same source.
MONITORING_DIR = (Path(__file__).resolve().parent / "mixin").resolve()
_CHECKOUT = MONITORING_DIR.parents[1]
#: Where generated artefacts go by default: the repository root in a checkout, else the
#: current directory (``python -m qmtl.monitoring --output DIR`` chooses explicitly).
REPO_ROOT = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.cwd()
GENERATED_HEADER = (
    "# Generated from operations/monitoring by `python -m qmtl.monitoring`; do not edit.\n"
)


class MonitoringError(Exception):
    """The monitoring source could not be rendered or packaged; message says why."""


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (PromQL), no aliases, stable key order."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


def dump_json(data: Any) -> str:
    """Canonical dashboard JSON: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def evaluate(path: Path, **tla: Any) -> dict[str, Any]:
    # go-jsonnet (the Go implementation, same language and output): the C++ one needed
    # ~5.4 s of CPU for our bundle, this ~0.6 s.
    import _gojsonnet

    if not path.is_file():
        raise MonitoringError(f"{path}: Jsonnet source not found; pass an existing file")
    try:
        text = _gojsonnet.evaluate_file(
            str(path), tla_codes={k: json.dumps(v) for k, v in tla.items()}
        )
    except RuntimeError as exc:
        # The first line is the assertion or error; the rest is a Jsonnet stack trace.
        first = str(exc).strip().splitlines()[0].removeprefix("RUNTIME ERROR: ")
        raise MonitoringError(f"{path.name}: {first}") from None
    return json.loads(text)


@dataclass(frozen=True)
class Rendered:
    alerts: dict[str, Any]
    rules: dict[str, Any]
    dashboards: dict[str, Any]


def render(overrides: dict[str, Any] | None = None, *, source: Path | None = None) -> Rendered:
    data = evaluate(source or MONITORING_DIR / "main.jsonnet", overrides=overrides or {})
    _check_slo_metrics(data.get("slos", {}))
    return Rendered(alerts=data["alerts"], rules=data["rules"], dashboards=data["dashboards"])


def _check_slo_metrics(slos: dict[str, Any]) -> None:
    """An SLO over a metric no process exports would never burn: refuse to render it."""
    from qmtl.foundation.catalogue import PROMETHEUS_BUILTINS, metric_names
    from qmtl.monitoring.promql import referenced_metrics

    known = metric_names() | PROMETHEUS_BUILTINS
    for name, slo in sorted(slos.items()):
        for field in ("errorQuery", "totalQuery"):
            unknown = sorted(referenced_metrics(slo[field]) - known)
            if unknown:
                raise MonitoringError(
                    f"SLO {name}: {field}: unknown metric {', '.join(unknown)}; use a metric "
                    "from qmtl/foundation/catalogue.py (histograms: _bucket, _count, _sum)"
                )


def alert_names(rendered: Rendered) -> list[str]:
    return [rule["alert"] for group in rendered.alerts["groups"] for rule in group["rules"]]


_RULE_KEY_ORDER = ("alert", "record", "expr", "for", "labels", "annotations")


def _conventional_order(rules_file: dict[str, Any]) -> dict[str, Any]:
    """Order rule keys the way Prometheus docs and mixins write them (Jsonnet sorts them)."""
    groups = []
    for group in rules_file["groups"]:
        rules = [
            {k: rule[k] for k in sorted(rule, key=lambda k: _RULE_KEY_ORDER.index(k))}
            for rule in group["rules"]
        ]
        groups.append(
            {
                "name": group["name"],
                **{k: v for k, v in group.items() if k not in ("name", "rules")},
                "rules": rules,
            }
        )
    return {"groups": groups}


def rendered_files(rendered: Rendered) -> dict[str, str]:
    """Relative path -> content of every artefact rendered from the mixin."""
    files = {
        "alert_rules.yml": GENERATED_HEADER + dump_yaml(_conventional_order(rendered.alerts)),
        "recording_rules.yml": GENERATED_HEADER + dump_yaml(_conventional_order(rendered.rules)),
    }
    for name, dashboard in sorted(rendered.dashboards.items()):
        files[f"dashboards/{name}"] = dump_json(dashboard)
    return files
