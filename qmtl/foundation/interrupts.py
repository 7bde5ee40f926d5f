"""Ctrl-C and SIGTERM stop a QMTL process the same way: ``KeyboardInterrupt``.

Python installs its Ctrl-C handler only when SIGINT is not already ignored at start-up,
and a shell starts the background jobs of a script with SIGINT ignored (``qmtl up &`` in
a script, some CI runners).  Our long-running commands promise that Ctrl-C stops what
they started, so they install the handler themselves rather than inherit "ignore".
"""

from __future__ import annotations

import signal

__all__ = ["interrupt_on_ctrl_c_and_term"]


def interrupt_on_ctrl_c_and_term() -> None:
    """Make SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
