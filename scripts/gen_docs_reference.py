"""Write the configuration and CLI reference pages of the docs from the code.

The configuration page lists every ``qmtl.yml`` key of ``qmtl/foundation/config.py``
with its type, default, bounds and the ``#:`` comment above it; the CLI page is the
``--help`` of every ``qmtl`` command, from the parser itself; the dashboards page lists
every panel of ``dashboards/`` with its query.  Generated, so they cannot
drift: the tests run ``--check``, which exits 1 naming the stale page.

    python scripts/gen_docs_reference.py [--check]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qmtl.cli import build_parser  # noqa: E402
from qmtl.foundation import config  # noqa: E402

CONFIG_PAGE = ROOT / "docs" / "reference" / "configuration.md"
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"
DASHBOARDS_PAGE = ROOT / "docs" / "reference" / "dashboards.md"


def _field_notes(source: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(class, field) -> (annotation as written, the ``#:`` comment above the field)."""
    lines = source.splitlines()
    notes: dict[tuple[str, str], tuple[str, str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            comment: list[str] = []
            index = item.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#:"):
                comment.insert(0, lines[index].strip()[2:].strip())
                index -= 1
            notes[(node.name, item.target.id)] = (ast.unparse(item.annotation), " ".join(comment))
    return notes


def _bounds(metadata: list[Any]) -> str:
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    parts = [
        f"{sign} {getattr(item, name)}"
        for item in metadata
        for name, sign in words.items()
        if getattr(item, name, None) is not None
    ]
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def configuration_page() -> str:
    notes = _field_notes(Path(config.__file__).read_text())
    out = [
        "# Configuration reference",
        "",
        "Every key of `qmtl.yml`, generated from `qmtl/foundation/config.py`. Every key is",
        "optional: the defaults run the whole stack on one machine with embedded backends.",
        "An unknown key, a wrong type or a value out of bounds stops the process with exit",
        "code 2 and one line naming the key. Each key can also be set in the environment as",
        "`QMTL_<SECTION>__<KEY>` (for example `QMTL_GATEWAY__PORT=8001`), which wins over the",
        "file; secrets (tokens, passwords in DSNs) are best given that way.",
        "",
    ]
    for section, field in config.QmtlConfig.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        doc = (model.__doc__ or "").strip()
        out += [f"## `{section}`", ""]
        if doc and not doc.startswith(model.__name__ + "("):
            out += [doc, ""]
        out += ["| key | type | default | notes |", "|---|---|---|---|"]
        for name, sub in model.model_fields.items():
            annotation, comment = notes.get((model.__name__, name), ("", ""))
            default = sub.get_default(call_default_factory=True)
            shown = "unset" if default is None else f"`{json.dumps(default, default=str)}`"
            bounds = _bounds(list(sub.metadata))
            text = " ".join(part for part in (comment, f"({bounds})" if bounds else "") if part)
            out.append(f"| `{name}` | `{_cell(annotation)}` | {_cell(shown)} | {_cell(text)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, str]]:
    """(command line, help text) for ``parser`` and each subcommand under it."""
    found = [(prefix, parser.format_help())]
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{prefix} {name}")
    return found


def cli_page() -> str:
    os.environ["COLUMNS"] = "88"  # help wraps at the terminal width: fixed for the page
    out = [
        "# CLI reference",
        "",
        "The `--help` of every `qmtl` command, generated from the parser. Exit codes",
        "everywhere: 0 ok, 1 runtime failure, 2 usage or configuration (one line names the",
        "problem and the fix), 3 planned but not built.",
        "",
    ]
    parser = build_parser()
    for command, text in _commands(parser, "qmtl"):
        out += [f"## `{command}`", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def dashboards_page() -> str:
    out = [
        "# Dashboards",
        "",
        "The dashboards in `dashboards/` (generated from the Jsonnet mixin in",
        "`operations/monitoring/`, shipped by the monitoring Helm chart and Terraform module",
        "as ConfigMaps labelled",
        '`grafana_dashboard: "1"`), with every panel and its query. Each dashboard has',
        "`datasource`, `job` and `instance` variables and links to the others; apply runs",
        "show as annotations where they matter.",
        "",
    ]
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        out += [
            f"## {dashboard['title']}",
            "",
            f"`dashboards/{path.name}`, uid `{dashboard['uid']}`.",
            "",
            "| panel | query |",
            "|---|---|",
        ]
        for panel in dashboard["panels"]:
            queries = "<br>".join(f"`{_cell(t['expr'])}`" for t in panel.get("targets", []))
            out.append(f"| {_cell(panel['title'])} | {queries} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a page is stale")
    args = parser.parse_args()
    with contextlib.redirect_stderr(io.StringIO()):
        pages = {
            CONFIG_PAGE: configuration_page(),
            CLI_PAGE: cli_page(),
            DASHBOARDS_PAGE: dashboards_page(),
        }
    stale = [path for path, text in pages.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(
                f"{os.path.relpath(path, ROOT)} is stale: run python scripts/gen_docs_reference.py",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for path, text in pages.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
