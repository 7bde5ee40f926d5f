"""A client-caused log line is written at a bounded rate, and what was left out is said."""

from __future__ import annotations

import logging

import pytest

from qmtl.foundation.loglimit import LogLimiter


def test_lines_past_the_burst_are_counted_and_reported_later(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = {"now": 100.0}
    monkeypatch.setattr("qmtl.foundation.loglimit.time.monotonic", lambda: clock["now"])
    limiter = LogLimiter(logging.getLogger("t"), burst=3, period=10)
    with caplog.at_level(logging.WARNING, logger="t"):
        for i in range(50):
            limiter.log("bad request %d", i)
        assert [r.getMessage() for r in caplog.records] == [f"bad request {i}" for i in range(3)]
        assert limiter.suppressed == 47
        clock["now"] += 10
        limiter.log("bad request %d", 50)
    assert caplog.records[-1].getMessage() == "bad request 50 (47 similar lines left out)"
    assert limiter.suppressed == 0 and len(caplog.records) == 4
