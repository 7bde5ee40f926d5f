"""The catalogue is what the processes really expose: every entry by its owners, with its
type and label names, and nothing outside the catalogue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from qmtl.devstack.stack import LocalStack, start_demo
from qmtl.foundation.catalogue import CATALOGUE, owned_by, spec

#: Series every Python process exposes by itself (prometheus_client defaults).
_BUILTIN_PREFIXES = ("python_", "process_")
_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}


def exposed(url: str) -> dict[str, tuple[str, set[tuple[str, ...]]]]:
    """family name (as the catalogue spells it) -> (type, label-name tuples of its samples)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    families: dict[str, tuple[str, set[tuple[str, ...]]]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {tuple(sorted(k for k in s.labels if k != "le")) for s in family.samples}
        families[name] = (family.type, labels)
    return families


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("catalogue") / "stack").start()
    try:
        start_demo(local)
        yield local
    finally:
        local.stop()


def test_catalogue_entries_are_unique_and_complete() -> None:
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names))
    assert spec("gateway_submissions_total").labels == ("code",)
    for owner in ("dagmanager", "gateway", "worldservice", "sdk"):
        assert owned_by(owner)


@pytest.mark.integration
@pytest.mark.parametrize("owner", ["dagmanager", "gateway", "worldservice", "sdk"])
def test_each_owner_exposes_its_entries_and_nothing_else(stack: LocalStack, owner: str) -> None:
    families = exposed(stack.url(owner))
    problems = []
    for entry in owned_by(owner):
        if entry.name not in families:
            problems.append(f"{entry.name}: not exposed")
            continue
        kind, label_sets = families[entry.name]
        if kind != _TYPES[entry.kind]:
            problems.append(f"{entry.name}: type {kind}, catalogue says {entry.kind}")
        for labels in label_sets:
            if labels != tuple(sorted(entry.labels)):
                problems.append(f"{entry.name}: labels {labels}, catalogue says {entry.labels}")
    catalogued = {s.name for s in CATALOGUE}
    for name in families:
        if name not in catalogued and not name.startswith(_BUILTIN_PREFIXES):
            problems.append(f"{name}: exposed by {owner} but not in the catalogue")
    others = {s.name for s in CATALOGUE if owner not in s.owners}
    for name in sorted(others & set(families)):
        problems.append(f"{name}: exposed by {owner}, which does not own it")
    assert problems == [], "\n".join(problems)


def test_labelled_collectors_match_the_catalogue() -> None:
    """Label names of the module attributes named like their metric (hermetic)."""
    import qmtl.services.dagmanager.metrics as dm
    import qmtl.services.gateway.metrics as gw
    import qmtl.services.worldservice.metrics as ws
    from qmtl.runtime.sdk import metrics as sdk

    checked = 0
    for module in (dm, gw, ws, sdk):
        for entry in CATALOGUE:
            collector = getattr(module, entry.name, None)
            if collector is None:
                continue
            assert tuple(collector._labelnames) == entry.labels, entry.name
            checked += 1
    assert checked >= 25


def test_no_module_defines_a_metric_outside_the_catalogue() -> None:
    """Every create() call names a catalogue entry (a literal that exists)."""
    import re

    root = Path(__file__).resolve().parents[2] / "qmtl"
    names = {s.name for s in CATALOGUE}
    for path in root.rglob("*.py"):
        for name in re.findall(r'm\.create\("([a-z0-9_]+)"\)', path.read_text()):
            assert name in names, f"{path}: {name}"
