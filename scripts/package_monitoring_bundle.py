#!/usr/bin/env python3
"""Package the seamless_v2_observability Jsonnet bundle into Helm and Terraform artefacts.

    python scripts/package_monitoring_bundle.py [--input BUNDLE] [--output DIR]
        [--samples DIR] [--format helm|terraform|all] [--check]

Exit codes: 0 done/up to date, 1 drift found by --check, 2 bad input or destination.
Importable too: ``Bundle``, ``build_helm(bundle, output_dir)``, ``build_terraform(...)``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qmtl.monitoring.packaging import (
    DEFAULT_BUNDLE,
    DEFAULT_OUTPUT,
    DEFAULT_SAMPLES,
    Bundle,
    build_helm,
    build_samples,
    build_terraform,
    package,
)
from qmtl.monitoring.render import MonitoringError

__all__ = ["Bundle", "build_helm", "build_samples", "build_terraform", "main", "package"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_BUNDLE, help="Jsonnet bundle")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="dist directory")
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES, help="samples directory")
    parser.add_argument("--format", choices=["helm", "terraform", "all"], default="all")
    parser.add_argument("--check", action="store_true", help="exit 1 if committed output drifted")
    args = parser.parse_args(argv)
    formats = ("helm", "terraform") if args.format == "all" else (args.format,)
    try:
        problems = package(args.input, args.output, args.samples, formats=formats, check=args.check)
    except MonitoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print("packaged bundle is out of date:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print("run: python scripts/package_monitoring_bundle.py", file=sys.stderr)
        return 1
    where = ", ".join(str(Path(args.output) / f) for f in formats)
    print(("up to date: " if args.check else "wrote: ") + f"{where}, {args.samples}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
