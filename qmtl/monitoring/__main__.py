"""Regenerate every monitoring artefact: ``python -m qmtl.monitoring [--check]``.

Writes alert_rules.yml, recording_rules.yml and dashboards/*.json from the mixin, then
packages the seamless_v2 bundle.  ``--check`` writes nothing and exits 1 when any
committed file differs from what the source renders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qmtl.monitoring.packaging import package
from qmtl.monitoring.render import REPO_ROOT, MonitoringError, render, rendered_files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qmtl.monitoring", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail on drift, write nothing")
    args = parser.parse_args(argv)
    try:
        files = rendered_files(render())
        problems = []
        for rel, content in files.items():
            path = REPO_ROOT / rel
            if args.check:
                if not path.is_file() or path.read_text() != content:
                    problems.append(f"out of date: {rel}")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
        dashboards = {f"dashboards/{p.name}" for p in (REPO_ROOT / "dashboards").glob("*.json")}
        for stale in sorted(dashboards - set(files)):
            if args.check:
                problems.append(f"stale (no longer generated): {stale}")
            else:
                Path(REPO_ROOT / stale).unlink()
        problems += package(check=args.check)
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
