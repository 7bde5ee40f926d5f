"""DAG Manager: diffs strategy DAGs, binds nodes to queues, collects orphan queues."""
