"""Check rendered Kubernetes objects and Grafana dashboards against their real schemas.

* core kinds: the Kubernetes OpenAPI schemas of ``kubernetes-validate`` (strict: an
  unknown field is an error), for each Kubernetes version we support;
* ``monitoring.coreos.com`` objects: the Prometheus Operator models of the npm package
  ``@kubernetes-models/prometheus-operator`` -- their runtime validation (types, enums,
  patterns) and, because those schemas accept unknown fields, the TypeScript compiler's
  excess-property check of each object against the model's interface;
* Grafana dashboards: ``tsc --noEmit`` of each dashboard against ``@grafana/schema``.

The npm packages and TypeScript live in ``.tools/node`` (``scripts/setup.sh``).  Every
function returns a list of problems, empty when all is well.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qmtl.devstack.components import ComponentUnavailable

__all__ = [
    "KUBERNETES_VERSIONS",
    "OPERATOR_KINDS",
    "check_dashboards",
    "check_operator_objects",
    "node_tools",
    "validate_core",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The oldest and newest minor the charts support (Chart.yaml kubeVersion: >=1.27).
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
OPERATOR_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
_OPERATOR_MODULE = "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1"


def node_tools() -> Path:
    """``.tools/node``, where setup.sh installs TypeScript and the schema packages."""
    tools = REPO_ROOT / ".tools" / "node"
    if not (tools / "node_modules" / "typescript" / "bin" / "tsc").is_file():
        raise ComponentUnavailable(
            f"{tools} has no TypeScript and schema packages; run scripts/setup.sh"
        )
    if shutil.which("node") is None:
        raise ComponentUnavailable("node is missing; run scripts/setup.sh")
    return tools


def validate_core(docs: Iterable[dict[str, Any]], version: str) -> list[str]:
    """Strict Kubernetes schema validation of every object that is not an operator kind."""
    import kubernetes_validate

    problems = []
    for doc in docs:
        if doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            continue
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name} (Kubernetes {version}): {exc.message} at {list(exc.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: Kubernetes {version} has no such kind")
    return problems


@contextmanager
def _scratch() -> Iterator[Path]:
    """A directory inside .tools/node, so TypeScript and node find its node_modules."""
    path = node_tools() / "checks" / uuid.uuid4().hex
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _tsc(directory: Path, files: list[str]) -> list[str]:
    (directory / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True, "noEmit": True, "target": "es2022", "module": "nodenext",
                    "moduleResolution": "nodenext", "skipLibCheck": True, "types": [],
                },
                "files": files,
            }
        )
    )  # fmt: skip
    tsc = node_tools() / "node_modules" / "typescript" / "bin" / "tsc"
    result = subprocess.run(
        ["node", str(tsc), "-p", str(directory), "--pretty", "false"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if result.returncode == 0:
        return []
    lines = (result.stdout + result.stderr).strip().splitlines()
    return [line for line in lines if "error TS" in line] or lines


def check_operator_objects(docs: Iterable[dict[str, Any]]) -> list[str]:
    """Prometheus Operator objects against the models: runtime validation + key sets."""
    objects = [d for d in docs if d.get("kind") in OPERATOR_KINDS]
    if not objects:
        return []
    with _scratch() as work:
        (work / "objects.json").write_text(json.dumps(objects))
        (work / "validate.mjs").write_text(
            f"import {{ readFileSync }} from 'node:fs';\n"
            f"import {{ {', '.join(OPERATOR_KINDS)} }} from '{_OPERATOR_MODULE}';\n"
            f"const models = {{ {', '.join(OPERATOR_KINDS)} }};\n"
            "const problems = [];\n"
            "for (const doc of JSON.parse(readFileSync(process.argv[2], 'utf8'))) {\n"
            "  try { new models[doc.kind](doc).validate(); }\n"
            "  catch (e) { problems.push(`${doc.kind}/${doc.metadata.name}: ${e.message}`); }\n"
            "}\n"
            "console.log(JSON.stringify(problems));\n"
        )
        run = subprocess.run(
            ["node", str(work / "validate.mjs"), str(work / "objects.json")],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if run.returncode != 0:
            return [f"node validate.mjs failed: {run.stderr.strip()[-800:]}"]
        problems: list[str] = json.loads(run.stdout)
        # Unknown fields: the models' schemas let them through, TypeScript does not.
        lines = [
            f"import type {{ {', '.join('I' + k for k in OPERATOR_KINDS)} }} from '{_OPERATOR_MODULE}';"
        ]
        for i, doc in enumerate(objects):
            lines.append(f"// {doc['kind']}/{doc['metadata']['name']}")
            lines.append(f"export const o{i}: I{doc['kind']} = {json.dumps(doc, indent=1)};")
        (work / "objects.mts").write_text("\n".join(lines) + "\n")
        problems += _tsc(work, ["objects.mts"])
    return problems


#: Where our dashboards go beyond the schema package's types, and why:
#: * ``definition``: Grafana saves the query's text on query variables; the package does
#:   not declare it;
#: * an annotation's ``target`` is typed as the generic ``DataQuery``; a Prometheus
#:   annotation's query also carries the Prometheus data source's fields.
_DASHBOARD_PRELUDE = """\
import type { AnnotationQuery, Dashboard, DataQuery, VariableModel } from '@grafana/schema';
type Variable = VariableModel & { definition?: string };
type PrometheusTarget = DataQuery & {
  expr: string; interval?: string; titleFormat?: string; textFormat?: string;
  useValueForTime?: boolean; tagKeys?: string;
};
type Annotation = Omit<AnnotationQuery, 'target'> & { target?: PrometheusTarget };
type QmtlDashboard = Omit<Dashboard, 'templating' | 'annotations'> & {
  templating?: { list?: Variable[] };
  annotations?: { list?: Annotation[] };
};
"""


def check_dashboards(dashboards: dict[str, dict[str, Any]]) -> list[str]:
    """Type-check each dashboard (file name -> JSON) against ``@grafana/schema``."""
    with _scratch() as work:
        files = []
        for i, (name, dashboard) in enumerate(sorted(dashboards.items())):
            file = f"d{i}.mts"
            (work / file).write_text(
                f"// {name}\n{_DASHBOARD_PRELUDE}"
                f"export const dashboard: QmtlDashboard = {json.dumps(dashboard, indent=1)};\n"
            )
            files.append(file)
        problems = _tsc(work, files)
        names = {f"d{i}.mts": name for i, name in enumerate(sorted(dashboards))}
        return [_rename(p, names) for p in problems]


def _rename(problem: str, names: dict[str, str]) -> str:
    for file, name in names.items():
        problem = problem.replace(file, name)
    return problem
