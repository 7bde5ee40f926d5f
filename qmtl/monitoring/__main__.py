"""Regenerate every monitoring artefact: ``python -m qmtl.monitoring [--check] [--output DIR] [--mixin DIR]``.

Writes alert_rules.yml, recording_rules.yml and dashboards/*.json from the mixin, then
packages the seamless_v2 bundle under ``operations/monitoring/dist`` and ``samples``.
``--check`` writes nothing and exits 1 when any committed file differs from what the
source renders.  ``--mixin`` renders another copy of ``operations/monitoring`` (a fork
with your own thresholds or SLOs).  ``--output`` defaults to the repository root in a checkout and to the
current directory for an installed package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qmtl.monitoring.packaging import ensure_writable, package
from qmtl.monitoring.render import (
    MONITORING_DIR,
    REPO_ROOT,
    MonitoringError,
    render,
    rendered_files,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qmtl.monitoring", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail on drift, write nothing")
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO_ROOT,
        help=f"root of the artefacts (default {REPO_ROOT})",
    )
    parser.add_argument(
        "--mixin",
        type=Path,
        default=MONITORING_DIR,
        help="mixin directory holding main.jsonnet and seamless_v2.jsonnet (default: the shipped one)",
    )
    args = parser.parse_args(argv)
    root: Path = args.output
    try:
        files = rendered_files(render(source=args.mixin / "main.jsonnet"))
        problems = []
        if not args.check:
            ensure_writable(root)
        for rel, content in files.items():
            path = root / rel
            if args.check:
                if not path.is_file() or path.read_text() != content:
                    problems.append(f"out of date: {rel}")
            else:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(content)
                except OSError as exc:
                    raise MonitoringError(
                        f"cannot write {path}: {exc.strerror}; choose a writable --output directory"
                    ) from None
        dashboards = {f"dashboards/{p.name}" for p in (root / "dashboards").glob("*.json")}
        for stale in sorted(dashboards - set(files)):
            if args.check:
                problems.append(f"stale (no longer generated): {stale}")
            else:
                Path(root / stale).unlink()
        bundle_root = root / "operations" / "monitoring"
        problems += package(
            bundle_path=args.mixin / "seamless_v2.jsonnet",
            output=bundle_root / "dist",
            samples=bundle_root / "samples",
            check=args.check,
        )
    except MonitoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print("generated monitoring files drifted from operations/monitoring:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print("run: python -m qmtl.monitoring  (or make monitoring) and commit", file=sys.stderr)
        return 1
    print("monitoring artefacts " + ("up to date" if args.check else "written"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
