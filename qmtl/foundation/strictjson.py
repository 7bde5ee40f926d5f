"""JSON as the standard defines it, at every door QMTL reads it through.

Python's :mod:`json` reads ``NaN``, ``Infinity`` and ``-Infinity`` (and turns ``1e999``
into ``inf``), none of which is JSON: a value like that is accepted once and then
breaks every later attempt to write it back out (``allow_nan=False`` refuses it), so a
single stored event or row can make an endpoint answer 500 for good.  :func:`loads`
refuses them where they come in, with a message naming the problem; :func:`dumps` is
the writer that matches it.

HTTP bodies (FastAPI routes through :class:`StrictJsonRequest`, the Gateway's own
parser, the SDK admin endpoint), ControlBus envelopes and DAG text all read through
:func:`loads`.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["NonFiniteNumber", "dumps", "loads", "require_finite"]


class NonFiniteNumber(ValueError):
    """A number JSON cannot carry (NaN, an infinity, or a literal too large for a float)."""


def _constant(name: str) -> float:
    raise NonFiniteNumber(f"{name} is not a JSON number; send a finite number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else text[:21] + "..."
        raise NonFiniteNumber(f"{shown} is out of range for a number; send a finite number")
    return value


def loads(text: str | bytes | bytearray, what: str = "body") -> Any:
    """Decode JSON text; every way hostile text can fail is a :class:`ValueError`
    whose message names ``what`` and the problem.

    Besides syntax errors and non-finite numbers: nesting deeper than the interpreter's
    recursion limit, integers over Python's 4,300-digit conversion limit and bytes that
    are not UTF-8.
    """
    try:
        return json.loads(text, parse_constant=_constant, parse_float=_finite)
    except NonFiniteNumber as exc:
        raise NonFiniteNumber(f"{what}: {exc}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply; flatten the structure") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses what :func:`loads` would refuse to read back."""
    return json.dumps(value, allow_nan=False, **kwargs)


def require_finite(value: Any, what: str) -> None:
    """Raise :class:`NonFiniteNumber` when ``value`` (decoded JSON, or built in code)
    holds a number JSON cannot carry; the message names ``what``."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError as exc:
        raise NonFiniteNumber(f"{what}: holds a number JSON cannot carry ({exc})") from None
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"{what}: cannot be written as JSON ({exc})") from None
