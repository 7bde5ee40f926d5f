"""The promotion guard asking a real Prometheus that other applications share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server

from qmtl import devstack
from qmtl.devstack.components import Prometheus, start_prometheus
from qmtl.services.worldservice.service import WorldService

from .test_service import make

pytestmark = pytest.mark.integration


def exporter() -> tuple[Counter, int, Any]:
    """A process's cross-context counter on its own /metrics."""
    registry = CollectorRegistry()
    hits = Counter("cross_context_cache_hit", "hits", ["node_id", "world_id"], registry=registry)
    port = devstack.free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    return hits, port, server


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[Prometheus, Counter, Counter]]:
    """Prometheus scraping another application's counter (already at 3) and QMTL's SDK."""
    other, other_port, other_server = exporter()
    ours, our_port, our_server = exporter()
    other.labels("their-node", "their-world").inc(3)
    ours.labels("n1", "w").inc(0)
    config = f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: other-app
    static_configs: [{{targets: ["127.0.0.1:{other_port}"]}}]
  - job_name: qmtl-sdk
    static_configs: [{{targets: ["127.0.0.1:{our_port}"]}}]
"""
    prometheus = start_prometheus(tmp_path / "prometheus", config)
    try:
        devstack.wait_for(
            lambda: len(series(prometheus, "cross_context_cache_hit_total")) == 2,
            timeout=60, what="Prometheus to scrape both exporters",
        )  # fmt: skip
        yield prometheus, other, ours
    finally:
        prometheus.stop()
        other_server.shutdown()
        our_server.shutdown()


def series(prometheus: Prometheus, query: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=10)
    return answer.json()["data"]["result"]


def guard_service(tmp_path: Path, prometheus: Prometheus, **ws: Any) -> WorldService:
    """The WorldService with its DAG Manager source faked clean and Prometheus real."""
    service, _bus, sources = make(tmp_path, prometheus_url=prometheus.url, **ws)

    def get(url: str, **kwargs: Any) -> httpx.Response:
        if url.startswith(prometheus.url):
            return httpx.get(url, **kwargs)
        return sources(url, **kwargs)

    service.guard._http_get = get
    return service


def test_only_qmtl_series_block_promotions(
    tmp_path: Path, shared: tuple[Prometheus, Counter, Counter]
) -> None:
    prometheus, _other, ours = shared
    service = guard_service(tmp_path, prometheus)
    view = service.guard.read().as_dict()
    assert view["blocked"] is False and view["hits"] == [], view
    ours.labels("n1", "w").inc(2)
    devstack.wait_for(
        lambda: series(prometheus, 'cross_context_cache_hit_total{job="qmtl-sdk"} > 0'),
        timeout=30, what="the SDK's hit to be scraped",
    )  # fmt: skip
    view = service.guard.read().as_dict()
    assert view["blocked"] is True
    assert [(h["labels"]["job"], h["value"]) for h in view["hits"]] == [("qmtl-sdk", 2.0)]


def test_a_query_prometheus_refuses_fails_closed(
    tmp_path: Path, shared: tuple[Prometheus, Counter, Counter]
) -> None:
    """A refused query has no result: it must read as "cannot tell", never "no hits"."""
    prometheus, _other, _ours = shared
    service = guard_service(tmp_path, prometheus, prometheus_selector='job=~"(unclosed"')
    view = service.guard.read().as_dict()
    assert view["blocked"] is True, view
    [unreadable] = view["unreachable"]
    assert unreadable["source"] == prometheus.url
    assert unreadable["error"].startswith("bad_data"), unreadable
