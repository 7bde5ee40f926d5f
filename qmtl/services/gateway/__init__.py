"""Gateway: strategy submissions over HTTP, diffs via the DAG Manager, ControlBus ACKs."""
