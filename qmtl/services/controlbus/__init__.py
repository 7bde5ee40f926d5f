"""ControlBus: CloudEvents-style envelopes between WorldService and Gateways.

At-least-once delivery on every backend; consumers deduplicate by envelope id.
"""

from qmtl.services.controlbus.bus import (
    ControlBus,
    EventLog,
    HttpBus,
    InProcessBus,
    KafkaBus,
    LocalLogBus,
    open_bus,
)
from qmtl.services.controlbus.envelope import (
    ACK,
    EVENT_TYPES,
    FREEZE,
    HEARTBEAT,
    UNFREEZE,
    WORLD_DELETED,
    Envelope,
    parse_envelope,
)

__all__ = [
    "ACK",
    "EVENT_TYPES",
    "FREEZE",
    "HEARTBEAT",
    "UNFREEZE",
    "WORLD_DELETED",
    "ControlBus",
    "Envelope",
    "EventLog",
    "HttpBus",
    "InProcessBus",
    "KafkaBus",
    "LocalLogBus",
    "open_bus",
    "parse_envelope",
]
