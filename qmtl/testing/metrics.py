"""Read metric values in tests without scraping (global registry), and deltas between reads."""

from __future__ import annotations

from prometheus_client import REGISTRY

__all__ = ["Snapshot", "value"]


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
