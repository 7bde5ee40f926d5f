"""Cross-cutting building blocks shared by every QMTL process."""

from qmtl.foundation.common.circuit_breaker import AsyncCircuitBreaker, CircuitOpenError, breakers

__all__ = ["AsyncCircuitBreaker", "CircuitOpenError", "breakers"]
