"""QMTL SDK: build strategies from nodes, run them, observe them.

``from qmtl.runtime.sdk import metrics`` gives the strategy's metrics module
(``metrics.start_metrics_server(port=8000)`` serves ``/metrics``).
"""

from qmtl.runtime.sdk import metrics
from qmtl.runtime.sdk.backfill import BackfillEngine, BackfillError
from qmtl.runtime.sdk.cache import CacheView, ComputeContext, NodeCache
from qmtl.runtime.sdk.gateway import SubmissionError, Submitted, submit
from qmtl.runtime.sdk.live import LiveRunner
from qmtl.runtime.sdk.node import Node, ProcessingNode, StreamInput
from qmtl.runtime.sdk.runner import Executor, Runner, RunResult, Strategy

__all__ = [
    "BackfillEngine",
    "BackfillError",
    "CacheView",
    "ComputeContext",
    "Executor",
    "LiveRunner",
    "Node",
    "NodeCache",
    "ProcessingNode",
    "RunResult",
    "Runner",
    "Strategy",
    "StreamInput",
    "SubmissionError",
    "Submitted",
    "metrics",
    "submit",
]
