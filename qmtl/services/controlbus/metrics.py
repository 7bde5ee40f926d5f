"""ControlBus metrics (Gateway and WorldService both run a bus end): defined once, here."""

from __future__ import annotations

from qmtl.foundation import metrics as m

__all__ = ["controlbus_invalid_events_total"]

controlbus_invalid_events_total = m.create("controlbus_invalid_events_total")
