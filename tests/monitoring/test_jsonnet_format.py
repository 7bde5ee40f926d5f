"""The mixin's Jsonnet is formatted by jsonnetfmt (the Debian jsonnet package), as a
mixin's lint step does: a diff in review is then always a change of meaning."""

from __future__ import annotations

from pathlib import Path

import pytest

from qmtl.devstack import find_binary
from qmtl.monitoring.render import MONITORING_DIR

from .conftest import run_tool


@pytest.fixture(scope="module")
def jsonnetfmt() -> str:
    return find_binary(
        ["jsonnetfmt"], "install it with: apt-get install jsonnet (scripts/setup.sh)"
    )


def sources() -> list[Path]:
    return sorted(
        p
        for p in MONITORING_DIR.rglob("*sonnet")
        if "dist" not in p.parts and p.suffix in (".jsonnet", ".libsonnet")
    )


def test_every_mixin_file_is_formatted(jsonnetfmt: str) -> None:
    files = sources()
    assert len(files) > 10
    result = run_tool([jsonnetfmt, "--test", *map(str, files)])
    assert result.returncode == 0, f"run: jsonnetfmt -i <file> for: {result.stdout}{result.stderr}"


def test_the_check_catches_a_misformatted_file(jsonnetfmt: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.libsonnet"
    bad.write_text("{a:1,\n  b:   2}\n")
    assert run_tool([jsonnetfmt, "--test", str(bad)]).returncode != 0
