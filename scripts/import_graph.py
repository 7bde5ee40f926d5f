#!/usr/bin/env python3
"""Print QMTL's package import graph and check the layering rules.

    python scripts/import_graph.py          # the graph, then "layering ok" (exit 0) or the
                                            # offending imports (exit 1)

Layers: ``foundation`` <- ``runtime``, ``services`` <- ``devstack`` <- ``cli``; the metric
catalogue is part of ``foundation`` (data every layer reads); ``monitoring`` is tooling
(rendering and packaging the bundle) that no product layer imports; ``testing`` is for
tests only and no product module imports it.  Imports are read from the source (``ast``), so
lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "qmtl"

#: Area of a module -> areas it must not import.
FORBIDDEN: dict[str, set[str]] = {
    "foundation": {
        "runtime",
        "services",
        "devstack",
        "cli",
        "ops",
        "examples",
        "testing",
        "monitoring",
    },
    "monitoring": {"runtime", "services", "devstack", "cli", "ops", "examples", "testing"},
    "runtime": {"services", "devstack", "cli", "ops", "examples", "testing", "monitoring"},
    "services": {"runtime", "devstack", "cli", "ops", "examples", "testing", "monitoring"},
    "examples": {"devstack", "cli", "ops", "testing"},
    "devstack": {"cli", "ops", "testing"},
    "ops": {"devstack", "testing"},
    "cli": {"testing"},
}


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "qmtl"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m == "qmtl" or m.startswith("qmtl.")}


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        if "proto" in rel.parts:
            continue
        source = area(module)
        for target in imports_of(path):
            if area(target) != source and area(target) != "qmtl":
                edges[module].add(target)
    return edges


def main() -> int:
    edges = graph()
    by_area: dict[str, set[str]] = defaultdict(set)
    violations = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            by_area[area(module)].add(area(target))
            if area(target) in FORBIDDEN.get(area(module), set()):
                violations.append(f"{module} imports {target}")
    for source in sorted(by_area):
        print(f"{source:11} -> {', '.join(sorted(by_area[source]))}")
    if violations:
        print("\nlayering violations:", *violations, sep="\n  ")
        return 1
    print("\nlayering ok: no product module imports qmtl.testing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
