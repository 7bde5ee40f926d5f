"""SDK tests share the process-wide registry: each test starts from zeroed SDK metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qmtl.runtime.sdk import metrics


@pytest.fixture(autouse=True)
def clean_sdk_metrics() -> Iterator[None]:
    metrics.reset_metrics()
    yield
    metrics.reset_metrics()


@pytest.fixture
def metrics_url() -> Iterator[str]:
    server = metrics.start_metrics_server(port=0)
    yield server.url
    server.stop()
