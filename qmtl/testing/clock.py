"""A clock tests move by hand: time-based rules (retry intervals, freeze deadlines) are
checked at the instant the test chooses, without waiting for it."""

from __future__ import annotations

import time

__all__ = ["FakeClock"]


class FakeClock:
    """``time.time()``-compatible: starts at the real time, moves only by :meth:`advance`."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
