"""Strict JSON: what Python's json module accepts beyond the standard is refused."""

from __future__ import annotations

import math

import pytest

from qmtl.foundation import strictjson


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[1e999]", '{"a": -1e400}'])
def test_non_finite_numbers_are_refused_with_the_place_named(text: str) -> None:
    """Each is a NonFiniteNumber whose message names the document and says what to send."""
    with pytest.raises(strictjson.NonFiniteNumber, match=r"^event: .*finite number"):
        strictjson.loads(text, "event")


def test_finite_numbers_and_big_integers_are_kept_exactly() -> None:
    """Floats parse as floats; integers beyond 64 bits stay exact integers."""
    value = strictjson.loads('{"f": 1.5e300, "i": 18446744073709551616, "z": -0.0}')
    assert value == {"f": 1.5e300, "i": 18446744073709551616, "z": 0.0}
    assert math.copysign(1, value["z"]) == -1


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{", "not valid JSON"), ("[" * 100_000, "nested too deeply"), (b"\xff", "not valid JSON")],
)
def test_malformed_text_is_a_value_error_naming_the_problem(
    text: str | bytes, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        strictjson.loads(text)


def test_dumps_and_require_finite_refuse_what_loads_would() -> None:
    """Values built in code are checked the same way before they are stored or sent."""
    with pytest.raises(ValueError):
        strictjson.dumps({"deadline": math.inf})
    with pytest.raises(strictjson.NonFiniteNumber, match="data"):
        strictjson.require_finite({"a": [1, math.nan]}, "data")
    strictjson.require_finite({"a": [1, 2.5, "x", None]}, "data")
    assert strictjson.loads(strictjson.dumps({"a": 1.25})) == {"a": 1.25}
