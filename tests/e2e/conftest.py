"""The alert-fidelity stack: one per test module that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .alert_cases import E2E, run_e2e_stack


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    yield from run_e2e_stack(tmp_path_factory)
