"""The live status view of ``qmtl up``: targets, key rates and alerts, one screen.

On a terminal the screen is redrawn in place (like ``top``), every line fitted to the
width; when output is a pipe or a file, each update is printed as one block.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import httpx

__all__ = [
    "STATUS_QUERIES",
    "StatusView",
    "fit",
    "job_health",
    "prometheus_status",
    "summarise_alerts",
]

STATUS_QUERIES = {
    "diffs/min": "sum(job_instance:diff_requests:rate5m) * 60",
    "diff p95 ms": "max(diff_duration_ms_p95)",
    "submit p95 ms": "max(gateway_e2e_latency_p95)",
    "node exec/s": "sum(job_instance_node_id:node_processed:rate5m)",
    "apply runs": 'count(world_apply_run_total{status="success"})',
}
CLEAR = "\x1b[H\x1b[2J"


def summarise_alerts(names: Iterable[str]) -> str:
    """``A, B x5``: each alert name once, with a count when it repeats."""
    counts = Counter(names)
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in sorted(counts.items())) or "none"


def fit(line: str, width: int) -> str:
    """Cut ``line`` to ``width`` columns, marking the cut."""
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def _query(client: httpx.Client, prometheus: str, expr: str) -> float | None:
    try:
        result = client.get(f"{prometheus}/api/v1/query", params={"query": expr}).json()
        series = result["data"]["result"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    return float(series[0]["value"][1]) if series else None


def job_health(healths: list[str]) -> str:
    """One job's targets as Prometheus reports them: ``up``, ``DOWN`` as soon as one target
    failed a scrape, ``starting`` while some are not scraped yet (``unknown``), never DOWN
    for a process that merely has not been scraped; ``(up/total)`` with replicas."""
    up = healths.count("up")
    word = "up" if up == len(healths) else "DOWN" if "down" in healths else "starting"
    return word + (f"({up}/{len(healths)})" if len(healths) > 1 else "")


def prometheus_status(prometheus: str) -> list[str]:
    """Targets, rates and alerts as Prometheus sees them (one client for the 7 queries)."""
    with httpx.Client(timeout=3) as client:
        return _prometheus_status(client, prometheus)


def _prometheus_status(client: httpx.Client, prometheus: str) -> list[str]:
    try:
        targets = client.get(f"{prometheus}/api/v1/targets").json()["data"]["activeTargets"]
        alerts = client.get(f"{prometheus}/api/v1/alerts").json()["data"]["alerts"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return [f"prometheus unreachable: {exc}"]
    by_job: dict[str, list[str]] = {}
    for target in targets:
        by_job.setdefault(target["labels"]["job"].removeprefix("qmtl-"), []).append(
            target["health"]
        )
    parts = [f"{job}={job_health(healths)}" for job, healths in sorted(by_job.items())]
    if not parts:
        parts = ["(waiting for the first scrape)"]
    rates = []
    for label, expr in STATUS_QUERIES.items():
        value = _query(client, prometheus, expr)
        rates.append(f"{label}={'-' if value is None or math.isnan(value) else f'{value:.1f}'}")
    # The Watchdog fires for ever (the dead-man's switch): shown apart, as a sign of life.
    watchdog = any(a["labels"]["alertname"] == "Watchdog" for a in alerts)
    alerts = [a for a in alerts if a["labels"]["alertname"] != "Watchdog"]
    firing = [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"]
    pending = [a["labels"]["alertname"] for a in alerts if a["state"] == "pending"]
    return [
        "targets: " + "  ".join(parts),
        "rates:   " + "  ".join(rates),
        f"alerts:  firing={summarise_alerts(firing)}  pending={summarise_alerts(pending)}"
        f"  watchdog={'ok' if watchdog else 'not firing yet'}",
    ]


def health_status(urls: dict[str, str]) -> list[str]:
    """Without Prometheus: each process's /health."""
    parts = []
    with httpx.Client(timeout=2) as client:
        for name, url in urls.items():
            try:
                ok = client.get(f"{url}/health").status_code == 200
            except httpx.HTTPError:
                ok = False
            parts.append(f"{name}={'up' if ok else 'DOWN'}")
    return ["targets: " + "  ".join(parts) + "   (no Prometheus: rates and alerts unavailable)"]


class StatusView:
    """Draws ``header`` + status lines: in place on a terminal, as blocks otherwise."""

    def __init__(
        self,
        out: TextIO,
        header: Sequence[str],
        lines: Callable[[], list[str]],
        *,
        tty: bool | None = None,
    ) -> None:
        self.out = out
        self.header = list(header)
        self.lines = lines
        self.tty = out.isatty() if tty is None else tty

    def render(self) -> str:
        stamp = time.strftime("%H:%M:%S")
        body = [f"{stamp} {line}" for line in self.lines()]
        if not self.tty:
            return "\n".join(body) + "\n\n"
        width = shutil.get_terminal_size((100, 24)).columns
        screen = [*self.header, "", *body, "", "Ctrl-C stops everything started here."]
        return CLEAR + "\n".join(fit(line, width) for line in screen) + "\n"

    def update(self) -> None:
        self.out.write(self.render())
        self.out.flush()
