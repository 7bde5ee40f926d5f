"""Log lines that a client can cause, at a bounded rate.

A malformed request or event is worth one line naming the problem; two thousand of them
a second are a log flood that the sender controls.  :class:`LogLimiter` lets ``burst`` lines through per ``period`` seconds
and counts the rest; the next line that gets through says how many were left out.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

__all__ = ["LogLimiter"]


class LogLimiter:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        level: int = logging.WARNING,
        burst: int = 10,
        period: float = 60.0,
    ) -> None:
        self.logger = logger
        self.level = level
        self.burst = burst
        self.period = period
        self.suppressed = 0
        self._window_start = 0.0
        self._in_window = 0
        self._lock = threading.Lock()

    def log(self, message: str, *args: Any) -> None:
        """Log ``message % args`` unless this period's lines are spent (then count it)."""
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= self.period:
                self._window_start, self._in_window = now, 0
            if self._in_window >= self.burst:
                self.suppressed += 1
                return
            self._in_window += 1
            left_out, self.suppressed = self.suppressed, 0
        if left_out:
            message += " (%d similar lines left out)"
            args = (*args, left_out)
        self.logger.log(self.level, message, *args)
