"""Foundation: configuration, circuit breakers, tracing and the shared metrics helpers."""
