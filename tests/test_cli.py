"""The `qmtl` command: help works, and unbuilt commands say so with exit code 3."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qmtl.cli import EXIT_NOT_BUILT, main


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("service", "up", "ops"):
        assert command in out


def test_unknown_service_is_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "qmtl", "service", "nosuch"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_console_script_entry_point_is_installed() -> None:
    """`qmtl` on PATH of the venv is the same CLI (pyproject [project.scripts])."""
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "qmtl"]
    assert ep.value == "qmtl.cli:main"


def test_unbuilt_command_says_so_and_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A planned command whose module is absent never pretends to work."""
    import argparse

    from qmtl import cli

    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser()
        p.set_defaults(handler=cli._entry("qmtl.not_a_module", "main", "qmtl frobnicate"))
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    assert main([]) == EXIT_NOT_BUILT
    assert "'qmtl frobnicate' is not built" in capsys.readouterr().err
