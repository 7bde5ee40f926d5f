"""Series names a PromQL expression reads.

Not a parser: good enough for the expressions we write (selectors, aggregations,
functions, binary operators), so rendering can refuse an SLO query over a metric no
process exports, and tests can hold every rule to the catalogue.
"""

from __future__ import annotations

import re

__all__ = ["grafana_expr", "referenced_metrics", "selectors_of"]

_TOKEN = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "vector",
}  # fmt: skip


def referenced_metrics(expr: str) -> set[str]:
    """Metric names in ``expr``; functions, label matchers, durations and keywords dropped."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\boffset\s+\w+", "", text)
    names = set()
    for match in _TOKEN.finditer(text):
        token = match.group()
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or token.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"[0-9.e+-]+", token):
            continue
        names.add(token)
    return names


#: Grafana variables of the dashboards, as "All" resolves them (their allValue).
_VARIABLES = re.compile(r"\$(?:\{)?(job|instance|cluster)(?:\})?")


def grafana_expr(expr: str, rate_interval: str = "5m") -> str:
    """A dashboard query as Prometheus receives it with every variable at "All":
    ``$job``/``$instance``/``$cluster`` match anything, ``$__rate_interval`` is
    ``rate_interval``."""
    return _VARIABLES.sub(".+", expr.replace("$__rate_interval", rate_interval))


def selectors_of(expr: str, metric: str) -> list[str]:
    """The label matchers ``metric`` is selected with in ``expr`` (one entry per use)."""
    return re.findall(rf"\b{re.escape(metric)}(?:\{{([^}}]*)\}}|(?![a-zA-Z0-9_:{{]))", expr)
