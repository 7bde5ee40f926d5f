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


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "X.yml", "ops", "cross-context", "show"],
        ["ops", "--config", "X.yml", "cross-context", "show"],
        ["ops", "cross-context", "--config", "X.yml", "show"],
        ["ops", "cross-context", "show", "--config", "X.yml"],
        ["ops", "fault", "dagmanager", "diff_fail=true", "--config", "X.yml"],
        ["service", "dagmanager", "--config", "X.yml"],
        ["service", "dagmanager", "server", "--config", "X.yml"],
        ["service", "dagmanager", "metrics", "--port", "9", "--config", "X.yml"],
        ["up", "--config", "X.yml", "--no-prometheus"],
    ],
)
def test_config_is_accepted_on_every_leaf_before_or_after(argv: list[str]) -> None:
    """One argparse tree: --config anywhere, as `qmtl up` and the docs print it."""
    from qmtl.cli import build_parser

    args = build_parser().parse_args(argv)
    assert args.config == "X.yml" and callable(args.handler)


def test_exit_codes_are_the_same_everywhere(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """0 ok, 1 runtime failure, 2 usage or configuration: one line, no traceback."""
    bad = tmp_path / "bad.yml"
    bad.write_text("gateway: {port: seven}\n")
    assert main(["ops", "cross-context", "show", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "gateway.port" in err and len(err.strip().splitlines()) == 1
    dead = f"http://127.0.0.1:{__import__('qmtl.devstack', fromlist=['free_port']).free_port()}"
    assert main(["ops", "cross-context", "reset", "--target", dead]) == 1
    out = capsys.readouterr()
    assert "reset failed" in out.err and "could not reset" in out.err and "Traceback" not in out.err
    assert main(["ops", "fault", "gateway", "oops", "--target", dead]) == 2
    assert "must look like NAME=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["ops", "cross-context", "explode"])
    assert usage.value.code == 2
