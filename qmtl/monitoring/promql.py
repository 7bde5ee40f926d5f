"""Series names a PromQL expression reads.

Not a parser: good enough for the expressions we write (selectors, aggregations,
functions, binary operators), so rendering can refuse an SLO query over a metric no
process exports, and tests can hold every rule to the catalogue.
"""

from __future__ import annotations

import re

__all__ = ["referenced_metrics"]

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
