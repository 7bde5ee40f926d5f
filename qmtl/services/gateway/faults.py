"""Gateway drills: faulty wrappers around its ports (installed only with drills on).

| switch                  | wrapper          | effect                                       |
|-------------------------|------------------|----------------------------------------------|
| log_write_fail          | FaultyLog        | the log refuses writes: 503, LostRequests    |
| submission_delay_ms     | FaultyClient     | every diff call is slowed (GatewayLatencyHigh)|
| submission_error_ratio  | FaultyClient     | that share of diffs fails UNAVAILABLE: 503   |
|                         |                  | answers after retries (GatewayErrorBudgetBurn)|
| ack_delay_ms            | FaultyBus        | freeze/unfreeze ACKs are late                |
|                         |                  | (ControlBusApplyAckLatencyHigh)              |
| shed_load               | admission        | admission control refuses every submission   |
|                         | (http.py)        | with 429 (GatewaySheddingLoad)               |
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from qmtl.foundation.contracts import DiffResult, SubmissionRequest
from qmtl.foundation.faults import FaultSet, Faulty, Switch
from qmtl.services.controlbus import ACK, Envelope

__all__ = ["FaultyBus", "FaultyClient", "FaultyLog", "gateway_faults"]


def gateway_faults() -> FaultSet:
    return FaultSet(
        Switch("log_write_fail", False, "the submission log refuses writes"),
        Switch("submission_delay_ms", 0.0, "every submission's diff call is delayed"),
        Switch("submission_error_ratio", 0.0, "this share of submissions is answered 503"),
        Switch("ack_delay_ms", 0.0, "ControlBus ACKs are sent this late"),
        Switch("shed_load", False, "admission control refuses every submission (429)"),
    )


class FaultyLog(Faulty):
    def insert(self, *args: Any, **kwargs: Any) -> Any:
        if self._faults.log_write_fail:
            raise OSError("submission log write refused (fault injection: log_write_fail)")
        return self._inner.insert(*args, **kwargs)


class FaultyClient(Faulty):
    """Wraps the DAG Manager client; a drill 503 is answered without a diff."""

    def __init__(self, client: Any, faults: FaultSet) -> None:
        super().__init__(client, faults)
        self.breaker = client.breaker

    async def diff(self, request: SubmissionRequest) -> DiffResult:
        if self._faults.submission_delay_ms:
            await asyncio.sleep(self._faults.submission_delay_ms / 1000)
        return await self._inner.diff(request)  # type: ignore[no-any-return]


class FaultyBus(Faulty):
    def publish(self, envelope: Envelope) -> None:
        if envelope.type == ACK and self._faults.ack_delay_ms:
            time.sleep(self._faults.ack_delay_ms / 1000)
        self._inner.publish(envelope)


def drill_error(faults: FaultSet) -> bool:
    """Whether this submission is one of the drill's failing share."""
    ratio = float(faults.submission_error_ratio)
    return ratio > 0 and random.random() < ratio
