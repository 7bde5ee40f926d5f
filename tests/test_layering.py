"""The package layering holds (foundation <- runtime, services <- devstack <- cli; monitoring
is tooling no product layer imports); no product module imports qmtl.testing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layering_holds() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "import_graph.py")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert "layering ok" in result.stdout


def test_the_checker_catches_a_violation(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import import_graph
    finally:
        sys.path.pop(0)
    package = tmp_path / "qmtl"
    (package / "services").mkdir(parents=True)
    (package / "services" / "bad.py").write_text("from qmtl.testing import receivers\n")
    monkeypatch.setattr(import_graph, "ROOT", package)
    assert import_graph.main() == 1
