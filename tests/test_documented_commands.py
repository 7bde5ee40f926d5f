"""Every command the README or the docs tell users to run works, as written.

Commands are collected from the code blocks and inline code of README.md and docs/*.md.
Synopsis lines are expanded into concrete commands (``a|b`` alternatives, ``[optional]``
parts with and without, placeholders such as NODE_ID filled in).  Each one must parse;
the operator commands (``qmtl ops ...``) are then run, exactly as printed, in the
directory of a running stack (whose ``qmtl.yml`` they find by themselves).
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qmtl.devstack.stack import LocalStack, start_demo
from qmtl.foundation.dag import chain_dag, parse_dag

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_COMMAND = re.compile(r"^(qmtl (service|up|ops)\b|python -m qmtl\.(monitoring|examples\.))")


def documented() -> list[tuple[str, str]]:
    """(file, command line) for every command line in the docs, code blocks and inline."""
    found: list[tuple[str, str]] = []
    for path in DOCS:
        text = path.read_text()
        in_block = False
        for line in text.splitlines():
            if line.startswith("```"):
                in_block = not in_block
                continue
            if in_block:
                command = re.sub(r"\s+#.*$", "", re.sub(r"^(\$ |\.venv/bin/)", "", line.strip()))
                if _COMMAND.match(command):
                    found.append((path.name, command))
        for match in re.finditer(r"`([^`]+)`", text):
            if _COMMAND.match(match.group(1)) and " " in match.group(1):
                found.append((path.name, match.group(1)))
    return found


def _options(tokens: list[str]) -> Iterator[list[str]]:
    """Expand ``[...]`` groups (with and without) and ``a|b`` alternatives."""
    groups: list[list[list[str]]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("["):
            group = [token]
            while not group[-1].endswith("]"):
                i += 1
                group.append(tokens[i])
            inner = " ".join(group)[1:-1].split()
            groups.append([[], inner])
        elif "|" in token and not token.startswith(("'", '"')):
            groups.append([[alt] for alt in token.split("|")])
        else:
            groups.append([[token]])
        i += 1
    for choice in itertools.product(*groups):
        yield [t for part in choice for t in part]


def concrete(command: str, fill: dict[str, str]) -> list[list[str]]:
    variants = []
    for part in re.split(r"\s+\|\s+(?=qmtl )", command):
        tokens = [t for t in shlex.split(part) if t != "..."]
        for variant in _options(tokens):
            variants.append([fill.get(t, t) for t in variant])
    return variants


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("docs") / "stack").start()
    try:
        start_demo(local, canary_seconds=3600)
        yield local
    finally:
        local.stop()


def test_the_docs_document_commands() -> None:
    commands = {c for _, c in documented()}
    assert any(c.startswith("qmtl ops cross-context show") for c in commands)
    assert any(c.startswith("qmtl service dagmanager metrics") for c in commands)


@pytest.mark.integration
def test_every_documented_command_parses_and_ops_commands_run(
    stack: LocalStack, tmp_path: Path
) -> None:
    from qmtl.cli import build_parser
    from qmtl.examples.questdb_parallel_example import build_parser as demo_parser

    node_id = parse_dag(chain_dag(1)).order[0]
    fill = {
        "NODE_ID": node_id, "SERVICE": "dagmanager", "NAME=VALUE": "diff_delay_ms=0",
        "DIR": str(tmp_path / "out"), "N": "5", "PATH": str(tmp_path / "events.db"),
    }  # fmt: skip
    failures = []
    ran = 0
    for source, command in sorted(set(documented())):
        for argv in concrete(command, fill):
            shown = " ".join(argv)
            try:
                if argv[0] == "qmtl":
                    build_parser().parse_args(argv[1:])
                elif argv[:3] == ["python", "-m", "qmtl.examples.questdb_parallel_example"]:
                    demo_parser().parse_args(argv[3:])
            except SystemExit:
                failures.append(f"{source}: does not parse: {shown}")
                continue
            if argv[:2] == ["qmtl", "ops"] or argv[:3] == ["python", "-m", "qmtl.monitoring"]:
                cwd = stack.workdir if argv[0] == "qmtl" else ROOT
                exe = [sys.executable, "-m", "qmtl"] if argv[0] == "qmtl" else [sys.executable]
                result = subprocess.run(
                    [*exe, *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=120
                )
                ran += 1
                out = result.stdout + result.stderr
                if result.returncode not in (0, 1) or "usage:" in out or "Traceback" in out:
                    failures.append(f"{source}: {shown} -> exit {result.returncode}: {out[-300:]}")
    assert ran >= 8, ran
    assert failures == [], "\n".join(failures)
