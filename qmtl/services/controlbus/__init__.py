"""ControlBus: CloudEvents-style envelopes between WorldService and Gateways.

At-least-once delivery on every backend; consumers deduplicate by envelope id.
"""

from qmtl.services.controlbus.bus import (
    ACK,
    FREEZE,
    UNFREEZE,
    ControlBus,
    Envelope,
    EventLog,
    HttpBus,
    InProcessBus,
    KafkaBus,
    LocalLogBus,
    open_bus,
)

__all__ = [
    "ACK",
    "FREEZE",
    "UNFREEZE",
    "ControlBus",
    "Envelope",
    "EventLog",
    "HttpBus",
    "InProcessBus",
    "KafkaBus",
    "LocalLogBus",
    "open_bus",
]
