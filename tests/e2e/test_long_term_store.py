"""Long-term store: both HA Prometheus replicas remote_write to VictoriaMetrics, which
keeps one sample of the pair, and every dashboard query answers there as in Prometheus.

Tolerance: MetricsQL's ``rate``/``increase`` do not extrapolate to the window edges as
PromQL does, and the deduplicated samples come from either replica (scraped at different
moments), so values may differ slightly: each must be within 10 % (relative) or 0.01
(absolute) of one replica's answer at the same evaluation time, with the same label sets
(the store keeps one replica's sample per interval, so either may be the right one).
Two kinds of expression get the tolerance their meaning needs: ``time() - <timestamp>``
within one scrape interval (1 s; the kept sample may be either replica's, scraped up to
an interval apart), and a recording rule holding a ``histogram_quantile`` within one
bucket of each other (with few observations a small difference in the rates moves the
estimate across a bucket bound); a raw ``histogram_quantile`` panel is compared by label
sets only, as MetricsQL estimates quantiles its own way (26 vs 10 ms seen).
Two differences are by design and allowed: a NaN in Prometheus (e.g. a ratio over no
traffic) is absent in VictoriaMetrics, which does not store NaN samples; and windows must
be filled -- over a series younger than its window PromQL divides by the window and
MetricsQL by the span covered -- so rules and dashboards use the e2e suite's short
windows (``FAST``) and the comparison waits until they are full.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qmtl import devstack
from qmtl.devstack.stack import LocalStack, Monitoring, start_demo, start_monitoring
from qmtl.foundation.catalogue import MS_BUCKETS
from qmtl.monitoring.promql import grafana_expr
from qmtl.monitoring.render import render

from .alert_cases import FAST

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RELATIVE, ABSOLUTE = 0.10, 0.01
SCRAPE_SECONDS = 1.0


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Monitoring]]:
    workdir: Path = tmp_path_factory.mktemp("lts")
    stack = LocalStack(workdir / "stack")
    monitoring = None
    try:
        stack.start()
        start_demo(stack, rate=5, canary_seconds=1, allocation_seconds=1)
        monitoring = start_monitoring(stack, rule_overrides=FAST, scrape_interval="1s", ha=True)
        yield stack, monitoring
    finally:
        if monitoring is not None:
            monitoring.stop()
        stack.stop()


#: One client for the hundreds of queries below (a client per call built an SSL context).
_HTTP = httpx.Client(timeout=30)


def _query(url: str, expr: str, at: float) -> dict[tuple[tuple[str, str], ...], float]:
    body = _HTTP.get(f"{url}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"})
    assert body.status_code == 200, (url, expr, body.text)
    result = body.json()["data"]["result"]
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in result}


def _bucket(value: float) -> int:
    return bisect.bisect_left(MS_BUCKETS, value)


def _close(expr: str, a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    if "histogram_quantile" in expr:
        return abs(_bucket(a) - _bucket(b)) <= 1
    absolute = SCRAPE_SECONDS if "time()" in expr else ABSOLUTE
    return abs(a - b) <= max(absolute, RELATIVE * max(abs(a), abs(b)))


def test_replica_pair_is_deduplicated(ha: tuple[LocalStack, Monitoring]) -> None:
    _stack, monitoring = ha
    store = monitoring.long_term
    assert store is not None
    window = 20

    def filled() -> dict[tuple[tuple[str, str], ...], float]:
        counts = _query(
            store.url, f'count_over_time(up{{job=~"qmtl-.*"}}[{window}s])', time.time() - 2
        )
        return counts if len(counts) == 4 and min(counts.values()) >= window * 0.7 else {}

    counts = devstack.wait_for(filled, timeout=90, what=f"{window}s of samples in VictoriaMetrics")
    assert isinstance(counts, dict)
    # One series per target, not one per replica: the replica label is dropped on write ...
    assert all("replica" not in dict(labels) for labels in counts)
    # ... and although both replicas write every scrape, at most one sample per 1 s
    # interval is kept (without dedup VictoriaMetrics would keep every sample written, the
    # sum). Compared per series at the same instant; a loaded machine misses scrapes, so
    # the replicas must together have written clearly more than one per interval.
    at = time.time() - 2
    stored = _query(store.url, f'count_over_time(up{{job=~"qmtl-.*"}}[{window}s])', at)
    per_replica = [
        _query(p.url, f'count_over_time(up{{job=~"qmtl-.*"}}[{window}s])', at)
        for p in monitoring.replicas
    ]
    for labels, count in stored.items():
        written = [replica.get(labels, 0.0) for replica in per_replica]
        assert min(written) >= window * 0.5, (labels, written, "both replicas write")
        assert sum(written) >= window * 1.2, (labels, written, "two writers")
        assert count <= window + 1, (labels, count, written, "not deduplicated")


def test_every_dashboard_query_answers_the_same_in_the_long_term_store(
    ha: tuple[LocalStack, Monitoring],
) -> None:
    _stack, monitoring = ha
    store = monitoring.long_term
    assert store is not None
    devstack.wait_for(
        lambda: _query(monitoring.prometheus.url, "sum(rate(diff_requests_total[1m])) > 0", time.time()),
        timeout=90, what="diff traffic visible",
    )  # fmt: skip

    def windows_filled() -> bool:
        """Every target has 40 s of samples in both stores as of the comparison instant
        (now - 10 s): longer than the longest FAST rate window (30 s), with margin."""
        for url in (store.url, *(p.url for p in monitoring.replicas)):
            counts = _query(url, 'count_over_time(up{job=~"qmtl-.*"}[40s])', time.time() - 15)
            if len(counts) != 4 or min(counts.values()) < 35:
                return False
        return True

    devstack.wait_for(windows_filled, timeout=150, what="40 s of samples in both stores")
    at = time.time() - 10  # both have every sample up to here (remote-write flush, latency offset)
    rendered = render(FAST)
    quantiles = {  # recording rules that hold a histogram_quantile
        r["record"] for g in rendered.rules["groups"] for r in g["rules"]
        if "histogram_quantile" in r["expr"]
    }  # fmt: skip
    compared, differences = 0, []
    for name, dashboard in sorted(rendered.dashboards.items()):
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                # Variables at "All"; $__rate_interval as Grafana sets it for a 1 s scrape
                # interval at this zoom, within the filled 40 s.
                expr = grafana_expr(target["expr"], "20s")
                kind = "histogram_quantile" if any(q in expr for q in quantiles) else expr
                # The store keeps either replica's sample of each interval: compare with both.
                answers = [
                    {
                        labels: value
                        for labels, value in _query(p.url, expr, at).items()
                        if not math.isnan(value)  # not stored by VictoriaMetrics
                    }
                    for p in monitoring.replicas
                ]
                got = _query(store.url, expr, at)
                if all(set(answer) != set(got) for answer in answers):
                    differences.append(
                        f"{name}: {panel['title']}: label sets {sorted(answers[0])} vs {sorted(got)}"
                    )
                    continue
                if "histogram_quantile" in expr:
                    # MetricsQL estimates quantiles its own way; over a 20 s window of a few
                    # observations the two differed by two buckets (26 vs 10 ms). Label sets
                    # only; the recorded quantiles (computed by Prometheus) are compared below.
                    continue
                for labels, value in got.items():
                    compared += 1
                    candidates = [a[labels] for a in answers if labels in a]
                    if not any(_close(kind, c, value) for c in candidates):
                        differences.append(
                            f"{name}: {panel['title']}: {dict(labels)}: {candidates} vs {value}"
                        )
    assert differences == [], "\n".join(differences)
    assert compared >= 30, compared
