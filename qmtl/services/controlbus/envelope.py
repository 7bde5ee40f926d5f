"""The ControlBus envelope: CloudEvents 1.0 structured events and their validation.

Every transport (:mod:`qmtl.services.controlbus.bus`) carries these and validates what it
receives with :func:`parse_envelope`, so a malformed event is refused the same way on
every backend and names its problem.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from qmtl.foundation import strictjson
from qmtl.foundation.contracts import RUN_ID, WORLD_ID
from qmtl.foundation.errors import InvalidRequest

__all__ = [
    "ACK",
    "EVENT_TYPES",
    "FREEZE",
    "HEARTBEAT",
    "UNFREEZE",
    "WORLD_DELETED",
    "Envelope",
    "parse_envelope",
]

FREEZE = "qmtl.apply.freeze"
UNFREEZE = "qmtl.apply.unfreeze"
ACK = "qmtl.apply.ack"
HEARTBEAT = "qmtl.gateway.heartbeat"
WORLD_DELETED = "qmtl.world.deleted"
EVENT_TYPES = (FREEZE, UNFREEZE, ACK, HEARTBEAT, WORLD_DELETED)

_ID = re.compile(RUN_ID)
_WORLD = re.compile(WORLD_ID)
_TEXT_LIMIT = 256
#: Fields of ``data`` each event type requires, with their checks.
_DATA_RULES: dict[str, dict[str, Callable[[Any], bool]]] = {
    FREEZE: {"world_id": lambda v: isinstance(v, str) and bool(_WORLD.fullmatch(v)),
             "run_id": lambda v: isinstance(v, str) and bool(_ID.fullmatch(v))},
    UNFREEZE: {"world_id": lambda v: isinstance(v, str) and bool(_WORLD.fullmatch(v)),
               "run_id": lambda v: isinstance(v, str) and bool(_ID.fullmatch(v))},
    ACK: {"world_id": lambda v: isinstance(v, str) and bool(_WORLD.fullmatch(v)),
          "phase": lambda v: v in ("freeze", "unfreeze"),
          "correlation_id": lambda v: isinstance(v, str) and bool(_ID.fullmatch(v))},
    HEARTBEAT: {"gateway_id": lambda v: isinstance(v, str) and bool(_ID.fullmatch(v))},
    WORLD_DELETED: {"world_id": lambda v: isinstance(v, str) and bool(_WORLD.fullmatch(v))},
}  # fmt: skip


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Envelope:
    """A CloudEvents 1.0 structured event."""

    type: str
    source: str
    subject: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=_now_iso)
    specversion: str = "1.0"
    datacontenttype: str = "application/json"

    def epoch(self) -> float:
        return datetime.fromisoformat(self.time.replace("Z", "+00:00")).timestamp()

    def age(self) -> float:
        return time.time() - self.epoch()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return strictjson.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        return parse_envelope(data)


def parse_envelope(raw: Any) -> Envelope:
    """Validate a CloudEvents envelope of ours; :class:`InvalidRequest` names the problem."""
    if not isinstance(raw, Mapping):
        raise InvalidRequest("an event must be a JSON object (CloudEvents structured mode)")
    missing = {"specversion", "type", "source", "subject", "data", "id", "time"} - set(raw)
    if missing:
        raise InvalidRequest(f"event lacks {', '.join(sorted(missing))}")
    unknown = set(raw) - {f for f in Envelope.__dataclass_fields__}
    if unknown:
        raise InvalidRequest(f"event has unknown attribute(s) {', '.join(sorted(unknown))}")
    if raw["specversion"] != "1.0":
        raise InvalidRequest(f"specversion must be '1.0', got {raw['specversion']!r}")
    if raw["type"] not in EVENT_TYPES:
        raise InvalidRequest(f"type must be one of {', '.join(EVENT_TYPES)}; got {raw['type']!r}")
    if not isinstance(raw["id"], str) or not _ID.fullmatch(raw["id"]):
        raise InvalidRequest("id must be 1-128 characters of [A-Za-z0-9_.:-]")
    for name in ("source", "subject"):
        value = raw[name]
        if not isinstance(value, str) or len(value) > _TEXT_LIMIT:
            raise InvalidRequest(f"{name} must be a string of at most {_TEXT_LIMIT} characters")
    if raw.get("datacontenttype", "application/json") != "application/json":
        raise InvalidRequest("datacontenttype must be application/json")
    stamp = raw["time"]
    try:
        if not isinstance(stamp, str):
            raise ValueError
        datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        raise InvalidRequest("time must be an RFC 3339 timestamp") from None
    data = raw["data"]
    if not isinstance(data, dict):
        raise InvalidRequest("data must be a JSON object")
    for name, check in _DATA_RULES[raw["type"]].items():
        if name not in data or not check(data[name]):
            raise InvalidRequest(f"data.{name} is missing or invalid for a {raw['type']} event")
    if "deadline" in data and (
        isinstance(data["deadline"], bool)
        or not isinstance(data["deadline"], int | float)
        or not math.isfinite(data["deadline"])
    ):
        raise InvalidRequest("data.deadline must be a finite unix time in seconds")
    try:  # whatever else data holds must survive being written back out
        strictjson.require_finite(data, "data")
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return Envelope(
        type=raw["type"], source=raw["source"], subject=raw["subject"], data=dict(data),
        id=raw["id"], time=stamp, specversion="1.0",
    )  # fmt: skip
