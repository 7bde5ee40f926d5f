"""The package as a user installs it: a wheel in a fresh venv, `qmtl up` from an empty dir.

Nothing of the checkout is on the path: the mixin, the templates and every module come
from the installed wheel.  Slow (a venv and an install), so it runs once, in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def _sources(dest: Path) -> None:
    """The files git would ship (tracked and new), symlinks kept: a clean build tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
        check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        src = ROOT / rel
        if not (src.exists() or src.is_symlink()):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, target)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "src"
    _sources(tree)
    dist = work / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(tree)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("qmtl-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    return env_dir


def run_in(
    env_dir: Path, cwd: Path, *argv: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}:{env['PATH']}"
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )  # fmt: skip


def test_qmtl_up_runs_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    where = run_in(
        installed,
        empty,
        "python",
        "-c",
        "import qmtl; from qmtl.monitoring.render import MONITORING_DIR; print(qmtl.__file__, MONITORING_DIR)",
    )
    assert where.returncode == 0 and str(ROOT) not in where.stdout, where.stdout + where.stderr
    result = run_in(installed, empty, "qmtl", "up", "--duration", "25", timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "ready. State, config and logs" in output and "Traceback" not in output
    assert re.search(
        r"targets: dagmanager=up\s+gateway=up\s+(prometheus=up\s+)?sdk=up\s+worldservice=up", output
    ), output[-3000:]
    assert (empty / ".qmtl-stack" / "rules" / "alert_rules.yml").is_file()


def test_monitoring_renders_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_in(installed, tmp_path, "python", "-m", "qmtl.monitoring", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "alert_rules.yml").read_text() == (ROOT / "alert_rules.yml").read_text()
    assert (out / "operations/monitoring/dist/helm/seamless_v2_observability/Chart.yaml").is_file()


def test_errors_reach_the_user_as_one_line(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "qmtl.yml").write_text("gateway: {port: seven}\n")
    bad_config = run_in(installed, tmp_path, "qmtl", "up", "--duration", "5")
    assert bad_config.returncode == 2
    assert bad_config.stderr.strip().count("\n") == 0 and "gateway.port" in bad_config.stderr
    (tmp_path / "qmtl.yml").unlink()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    denied = run_in(
        installed, tmp_path, "python", "-m", "qmtl.monitoring", "--output", str(blocker / "x")
    )
    assert denied.returncode == 2 and "Traceback" not in denied.stderr
    assert "not a writable directory" in denied.stderr and denied.stderr.strip().count("\n") == 0
    unknown = run_in(installed, tmp_path, "qmtl", "up", "--with", "redis")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
