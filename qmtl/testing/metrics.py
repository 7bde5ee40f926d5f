"""Read metric values in tests without scraping (global registry), and deltas between reads."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "Snapshot", "scrape", "value"]


def value(name: str, **labels: str) -> float:
    """Current value of a sample, 0.0 when the series does not exist."""
    found = REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


class Snapshot:
    """Remember values now, ask for the change later: ``snap.delta("diff_requests_total")``."""

    def __init__(self, *names: str) -> None:
        self._before = {name: value(name) for name in names}

    def delta(self, name: str, **labels: str) -> float:
        before = self._before.get(name, 0.0) if not labels else 0.0
        return value(name, **labels) - before


class Scrape(dict[tuple[str, frozenset[tuple[str, str]]], float]):
    """Samples of one ``/metrics`` scrape, keyed by (name, labels)."""

    def get_value(self, name: str, **labels: str) -> float | None:
        return self.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: v for (n, labels), v in self.items() if n == name}


#: Scrapes are polled: one client, not an SSL context per call.
_HTTP = httpx.Client(timeout=10)


def scrape(url: str) -> Scrape:
    """GET a Prometheus text exposition over HTTP and parse it with prometheus_client."""
    response = _HTTP.get(url)
    response.raise_for_status()
    result = Scrape()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            result[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return result
