"""Cross-cutting building blocks shared by every QMTL process."""

from qmtl.foundation.common.circuit_breaker import (
    BREAKER_THRESHOLD,
    AsyncCircuitBreaker,
    CircuitOpenError,
    breakers,
)

__all__ = ["BREAKER_THRESHOLD", "AsyncCircuitBreaker", "CircuitOpenError", "breakers"]
