"""Envelope validation: one bad event can never reach the log it would break."""

from __future__ import annotations

import math

import pytest

from qmtl.foundation.errors import InvalidRequest
from qmtl.services.controlbus import FREEZE, Envelope, EventLog, parse_envelope


def freeze(**data: object) -> dict[str, object]:
    envelope = Envelope(
        type=FREEZE, source="x", subject="w", data={"world_id": "w", "run_id": "r", **data}
    )
    return envelope.as_dict()


@pytest.mark.parametrize("deadline", [math.inf, -math.inf, math.nan, True, "soon"])
def test_a_deadline_must_be_a_finite_unix_time(deadline: object) -> None:
    with pytest.raises(InvalidRequest, match=r"data\.deadline must be a finite unix time"):
        parse_envelope(freeze(deadline=deadline))


def test_any_non_finite_number_in_data_is_refused() -> None:
    """Not only known fields: anything that could not be served back as JSON."""
    with pytest.raises(InvalidRequest, match="data: holds a number JSON cannot carry"):
        parse_envelope(freeze(extra={"x": [1, math.nan]}))
    assert parse_envelope(freeze(deadline=1.5e9, extra={"x": [1, 2.5]})).data["deadline"] == 1.5e9


def test_the_log_refuses_an_event_it_could_not_serve_and_keeps_serving() -> None:
    """Envelopes built in code skip parse_envelope: the log checks them itself."""
    log = EventLog()
    good = Envelope(type=FREEZE, source="x", subject="w", data={"world_id": "w", "run_id": "r"})
    bad = Envelope(
        type=FREEZE, source="x", subject="w", data={"world_id": "w", "run_id": "r", "d": math.inf}
    )
    assert log.append(good) == 1
    with pytest.raises(InvalidRequest, match="cannot be logged"):
        log.append(bad)
    last, events = log.read(0)
    assert last == 1 and [e.id for e in events] == [good.id]
    assert all(e.to_json() for e in events)
