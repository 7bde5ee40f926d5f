"""Config loading: defaults, file, environment overrides and the errors users see."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from qmtl.foundation.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "qmtl.yml"
    path.write_text(text)
    return path


def test_defaults_without_file_bind_loopback() -> None:
    """With no file every service binds 127.0.0.1 and tracing is off."""
    cfg = load_config(None, env={})
    assert cfg.gateway.host == cfg.dagmanager.host == cfg.worldservice.host == "127.0.0.1"
    assert cfg.telemetry.otel_exporter_endpoint is None


def test_file_values_and_the_documented_telemetry_section(tmp_path: Path) -> None:
    """The telemetry block of the documentation is accepted verbatim."""
    path = write(
        tmp_path,
        "telemetry:\n  otel_exporter_endpoint: http://localhost:4318/v1/traces\n"
        "gateway:\n  port: 9100\n",
    )
    cfg = load_config(path, env={})
    assert cfg.telemetry.otel_exporter_endpoint == "http://localhost:4318/v1/traces"
    assert cfg.gateway.port == 9100


def test_env_overrides_file(tmp_path: Path) -> None:
    """QMTL_SECTION__KEY wins over the file and is parsed as a YAML scalar."""
    path = write(tmp_path, "gateway:\n  port: 9100\n")
    cfg = load_config(
        path,
        env={"QMTL_GATEWAY__PORT": "9200", "QMTL_TELEMETRY__OTEL_EXPORTER_ENDPOINT": "console"},
    )
    assert cfg.gateway.port == 9200
    assert cfg.telemetry.otel_exporter_endpoint == "console"


def test_nested_env_override() -> None:
    """Deeper keys use more separators (per-topic lag thresholds)."""
    cfg = load_config(None, env={"QMTL_DAGMANAGER__LAG_THRESHOLDS__PRICES": "12.5"})
    assert cfg.dagmanager.lag_thresholds == {"prices": 12.5}


def test_unknown_key_is_named(tmp_path: Path) -> None:
    """A typo names the dotted key and suggests the fix."""
    path = write(tmp_path, "gateway:\n  prot: 9100\n")
    with pytest.raises(ConfigError, match=r"gateway\.prot: unknown key in gateway"):
        load_config(path, env={})


def test_unknown_section_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "gatway:\n  port: 1\n")
    with pytest.raises(ConfigError, match=r"gatway: unknown key in top level"):
        load_config(path, env={})


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway:\n  port: eighty\n")
    with pytest.raises(ConfigError, match=r"gateway\.port: .*integer.*'eighty'"):
        load_config(path, env={})


def test_bad_env_value_mentions_variable() -> None:
    with pytest.raises(ConfigError, match="QMTL_GATEWAY__PORT"):
        load_config(None, env={"QMTL_GATEWAY__PORT": "abc"})


def test_bad_endpoint_shape(tmp_path: Path) -> None:
    path = write(tmp_path, "telemetry:\n  otel_exporter_endpoint: localhost:4318\n")
    with pytest.raises(ConfigError, match=r"telemetry\.otel_exporter_endpoint: .*'console'"):
        load_config(path, env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yml", env={})


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway:\n  port: [1,\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line"):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "config file not found"),
        ("gateway:\n  prot: 1\n", "gateway.prot: unknown key"),
        ("gateway:\n  port: x\n", "gateway.port:"),
    ],
)
def test_cli_exits_2_without_traceback(tmp_path: Path, content: str | None, expected: str) -> None:
    """Every config problem reaches the operator as one line and exit code 2."""
    path = tmp_path / "qmtl.yml"
    if content is not None:
        path.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "qmtl", "service", "gateway", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_non_finite_numbers_are_refused_by_key(tmp_path: Path) -> None:
    """YAML's .inf and .nan are not values any setting can take: each key is named."""
    path = write(
        tmp_path,
        "worldservice:\n  ack_timeout_seconds: .inf\ndagmanager:\n  lag_thresholds: {t: .nan}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert "worldservice.ack_timeout_seconds: Input should be a finite number" in message
    assert "dagmanager.lag_thresholds.t: Input should be a finite number" in message


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    """Duplicate keys used to be accepted, the last one silently winning."""
    path = write(tmp_path, "gateway:\n  port: 9000\n  port: 9001\n")
    with pytest.raises(ConfigError, match=r"line 3, column 3\): key 'port' appears twice"):
        load_config(path, env={})


def test_yaml_aliases_are_refused_before_anything_is_expanded(tmp_path: Path) -> None:
    """A ten-line alias bomb made a 522 MB error message; now one short line, at once."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefghij"):
        prev = "abcdefghij"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "alias *a is not accepted" in str(caught.value) and len(str(caught.value)) < 300


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway:\n  admin_token: 918273645\n  port: [1, 2]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert "gateway.admin_token: Input should be a valid string" in message
    assert "918273645" not in message


def test_long_values_are_shortened_in_messages(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway:\n  host: " + "h" * 5000 + "\n  port: " + "9" * 500 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert len(str(caught.value)) < 400 and "..." in str(caught.value)
