"""The docs are a site that builds strictly, with generated reference pages that match
the code, every page reachable from the navigation and every Python example runnable."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = Path(sys.executable).with_name("mkdocs")


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""},
    )  # fmt: skip


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    shutil.copytree(DOCS, tmp_path / "docs")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    page = tmp_path / "docs" / "index.md"
    page.write_text(page.read_text() + "\nSee [the missing page](missing.md).\n")
    built = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0 and "missing.md" in built.stderr, built.stderr[-3000:]


def _nav_pages(nav: list[object]) -> set[str]:
    pages: set[str] = set()
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            pages |= _nav_pages(value) if isinstance(value, list) else {str(value)}
    return pages


def test_every_page_is_in_the_navigation() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    on_disk = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert _nav_pages(nav) == on_disk


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_docs_reference", ROOT / "scripts" / "gen_docs_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_pages_match_the_code() -> None:
    checked = subprocess.run(
        [sys.executable, "scripts/gen_docs_reference.py", "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_a_stale_reference_page_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = _generator()
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration reference\n\nan older list of keys\n")
    monkeypatch.setattr(generator, "CONFIG_PAGE", stale)
    monkeypatch.setattr(sys, "argv", ["gen_docs_reference.py", "--check"])
    assert generator.main() == 1
    assert "an older list" in stale.read_text(), "--check changes nothing"


def test_every_config_key_is_in_the_reference() -> None:
    from qmtl.foundation.config import QmtlConfig

    page = (DOCS / "reference" / "configuration.md").read_text()
    for section, field in QmtlConfig.model_fields.items():
        assert f"## `{section}`" in page
        model = field.annotation
        for key in model.model_fields:  # type: ignore[union-attr]
            assert f"| `{key}` |" in page, f"{section}.{key}"


PYTHON_BLOCKS = [
    (path.relative_to(ROOT).as_posix(), index, block)
    for path in sorted(DOCS.rglob("*.md"))
    for index, block in enumerate(
        re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)
    )
]


@pytest.mark.parametrize(
    ("page", "index", "code"), PYTHON_BLOCKS, ids=[f"{p}#{i}" for p, i, _ in PYTHON_BLOCKS]
)
def test_every_python_example_runs(tmp_path: Path, page: str, index: int, code: str) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, f"{page} block {index}:\n{ran.stderr[-3000:]}"


def test_the_docs_have_python_examples() -> None:
    assert len(PYTHON_BLOCKS) >= 1
