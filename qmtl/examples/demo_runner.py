"""The demo workload of ``qmtl up``: strategies live against a local stack.

    python -m qmtl.examples.demo_runner --config STATE/qmtl.yml [--rate 5]

* creates the world ``demo`` and submits the two moving-average strategies through the
  Gateway (traces and retries included), then runs them on generated prices;
* submits a small canary DAG every ``--canary-seconds`` so the DAG Manager always sees
  diff traffic (the DiffThroughputLow alert watches that);
* refreshes the world's allocation snapshots and runs one apply at start;
* serves ``/metrics`` and the SDK admin actions on ``sdk.admin_port``, including the
  drill faults used by ``qmtl ops fault sdk ...`` and the end-to-end alert suite:
  ``node_delay_ms``, ``node_fail``, ``cross_context``, ``cache_ballast_mb``,
  ``allocations_paused``, ``canary_paused``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import threading
import time
from typing import Any

import httpx

from qmtl.examples.questdb_parallel_example import MovingAverageCross
from qmtl.foundation.config import resolve_config
from qmtl.foundation.contracts import SubmissionRequest
from qmtl.foundation.dag import chain_dag
from qmtl.foundation.faults import FaultSet, Switch
from qmtl.foundation.interrupts import interrupt_on_ctrl_c_and_term
from qmtl.foundation.tracing import setup_tracing, shutdown_tracing
from qmtl.runtime.io import SQLiteRecorder
from qmtl.runtime.sdk import (
    BackfillEngine,
    ComputeContext,
    Executor,
    NodeCache,
    ProcessingNode,
    Runner,
    Strategy,
    StreamInput,
)
from qmtl.runtime.sdk.admin import start_admin_server
from qmtl.runtime.sdk.gateway import SubmissionError, submit
from qmtl.services.dagmanager.client import DagManagerClient

__all__ = ["DemoRunner", "main"]

log = logging.getLogger("qmtl.demo")
WORLD = "demo"
CANARY_DAG = chain_dag(3, salt="canary")


def strategy_id(strategy: Strategy) -> str:
    """One id per strategy instance: two instances of one class are different strategies
    (sharing an id would make the second a new *version* of the first and orphan its queues)."""
    asset = getattr(strategy, "asset", None)
    return f"{strategy.name}-{asset}" if asset else strategy.name


def demo_faults() -> FaultSet:
    """Drill switches of the demo; each one makes a real code path misbehave."""
    return FaultSet(
        Switch("node_delay_ms", 0.0, "the drill node computes this slowly"),
        Switch("node_fail", False, "the drill node raises"),
        Switch("cross_context", False, "a backtest context reuses the live caches once"),
        Switch("cache_ballast_mb", 0.0, "a node cache holds this many MB of real bytes"),
        Switch("allocations_paused", False, "allocation snapshots stop being refreshed"),
        Switch("canary_paused", False, "no more canary diffs"),
        Switch("recorder_fail", False, "the event recorder's storage refuses writes"),
        Switch("backfill_fail", False, "a backfill job's history source fails every attempt"),
    )


class DrillRecorder(SQLiteRecorder):
    """The demo's SQLite recorder, whose storage refuses writes while ``recorder_fail``
    is on: the recorder's own retry and error counting run (EventRecorderErrors)."""

    def __init__(self, path: str, faults: FaultSet) -> None:
        self.faults = faults
        super().__init__(path, retries=1, backoff_seconds=0.05)

    def _write(self, rows: list[Any]) -> None:
        if self.faults.recorder_fail:
            raise OSError("drill: the recorder's storage refuses writes (recorder_fail)")
        super()._write(rows)


class Drill(Strategy):
    """A node whose speed and failures the drills control (NodeSlowProcessing, NodeFailures)."""

    def __init__(self, faults: FaultSet) -> None:
        super().__init__()
        self.faults = faults

    def setup(self) -> None:
        price = StreamInput(tags=["drill"], interval=60, period=5, name="drill_price")
        self.add_nodes(
            price, ProcessingNode(input=price, compute_fn=self.compute, name="drill_node", period=5)
        )

    def compute(self, view):  # type: ignore[no-untyped-def]
        if self.faults.node_delay_ms:
            time.sleep(self.faults.node_delay_ms / 1000)
        if self.faults.node_fail:
            raise RuntimeError("drill: injected compute failure")
        return view.values()[-1]


class DemoRunner:
    def __init__(
        self, config: Any, rate: float, canary_seconds: float, allocation_seconds: float
    ) -> None:
        self.config = config
        self.rate = rate
        self.canary_seconds = canary_seconds
        self.allocation_seconds = allocation_seconds
        self.gateway = config.gateway.url
        self.worldservice = config.worldservice.url
        self.faults = demo_faults()
        self.stop = threading.Event()
        self.ballast: NodeCache | None = None
        # The demo runs in the state directory: its payloads land in events.db there.
        self.recorder = DrillRecorder("events.db", self.faults)
        self.strategies: list[Strategy] = [
            MovingAverageCross("btc", 5, 20, self.recorder),
            MovingAverageCross("eth", 10, 40, self.recorder),
            Drill(self.faults),
        ]
        self.executors: list[tuple[Executor, StreamInput]] = []
        self.backfill = BackfillEngine(max_retries=2, backoff_seconds=0.2)
        self.submitted = 0
        self.canaries = 0
        #: This process's admin endpoint, sent with submissions for the promotion guard.
        self.admin_url = config.sdk.advertise_url or f"http://127.0.0.1:{config.sdk.admin_port}"
        #: One client for the WorldService calls (allocations are refreshed periodically),
        #: with its admin token when one is configured (worlds, allocations and applies
        #: change state).
        token = config.worldservice.admin_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(timeout=10, headers=headers)

    # -- drills --------------------------------------------------------------------------------
    def faults_changed(self) -> None:
        """Called by the admin server after every change of the drill switches."""
        self._apply_ballast()
        if self.faults.cross_context:
            self._cross_context_hit()
        if self.faults.backfill_fail:
            self._failed_backfill()

    def _apply_ballast(self) -> None:
        """Real bytes in a real node cache, reported by nodecache_resident_bytes."""
        if self.ballast is not None:
            self.ballast.close()
            self.ballast = None
        megabytes = float(self.faults.cache_ballast_mb)
        if megabytes > 0:
            self.ballast = NodeCache("drill_ballast", period=max(1, int(megabytes)))
            for i in range(max(1, int(megabytes))):
                self.ballast.append("drill", 60, float(i), bytes(1024 * 1024))

    def _failed_backfill(self) -> None:
        """A backfill whose history source fails every attempt: the engine retries, gives
        up and counts it (BackfillFailures); the node starts without that history."""
        stream = StreamInput(tags=["drill"], interval=60, period=5, name="drill_backfill")

        def unavailable(start: float, end: float) -> list[tuple[float, Any]]:
            raise ConnectionError("drill: the history archive is unavailable (backfill_fail)")

        now = time.time()
        try:
            self.backfill.run(stream, now - 600, now, unavailable)
        except Exception as exc:  # the failure under drill: counted by the engine
            log.warning("drill backfill failed as injected: %s", exc)
        finally:
            self.faults.update({"backfill_fail": False})

    def _cross_context_hit(self) -> None:
        """A backtest served from a cache a live run filled: the breach the runbook is about.

        Isolated caches (the default) cannot serve another context's data, so the drill
        runs its own executor with shared caches (``isolate_contexts=False``): live data
        goes in, the context switches to a backtest, and the backtest's read is counted.
        """
        instance = Runner.build(Drill(self.faults))
        stream: StreamInput = instance.nodes[0]  # type: ignore[assignment]
        live = ComputeContext(world_id=WORLD, execution_domain="live")
        executor = Executor(instance.ordered_nodes(), live, isolate_contexts=False)
        try:
            now = time.time()
            for minute in range(5, 0, -1):
                executor.feed(stream, now - 60 * minute, {"price": 100.0, "volume": 1.0})
            executor.set_context(
                ComputeContext(world_id="backtest-world", execution_domain="backtest")
            )
            executor.feed(stream, now, {"price": 100.0, "volume": 1.0})
        finally:
            executor.close()
            self.faults.update({"cross_context": False})

    # -- workload ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the world, submit and warm up each strategy, request one apply.

        A refusal or an unreachable service is logged and the demo goes on: the stack's
        alerts and status view show what is wrong, and the run loop retries allocations.
        """
        self._call_worldservice("creating the world", "POST", "/worlds", {"world_id": WORLD})
        for strategy in self.strategies:
            instance = Runner.build(strategy)
            try:
                result = submit(
                    instance,
                    self.gateway,
                    world_id=WORLD,
                    execution_domain="live",
                    strategy_id=strategy_id(instance),
                    admin_url=self.admin_url,
                )
                self.submitted += 1
                log.info("submitted %s: %d queues", instance.name, len(result.queue_map))
            except SubmissionError as exc:
                log.error("submitting %s failed: %s", instance.name, exc)
            executor = Executor(
                instance.ordered_nodes(), ComputeContext(world_id=WORLD, execution_domain="live")
            )
            stream: StreamInput = instance.nodes[0]  # type: ignore[assignment]
            self.warm_up(executor, stream)
            self.executors.append((executor, stream))
        self.refresh_allocations()
        activate = {"activate": [strategy_id(s) for s in self.strategies]}
        applied = self._call_worldservice(
            "requesting the apply run", "POST", f"/worlds/{WORLD}/apply", activate, timeout=30
        )
        if applied is not None:
            log.info("apply run requested: %s", applied)

    def _call_worldservice(
        self, what: str, method: str, path: str, body: Any, timeout: float = 10
    ) -> Any:
        """One WorldService call; its JSON answer, or None (logged) on failure."""
        try:
            response = self.http.request(
                method, f"{self.worldservice}{path}", json=body, timeout=timeout
            )
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.error("%s failed: %s", what, exc)
            return None

    def warm_up(self, executor: Executor, stream: StreamInput) -> None:
        """Backfill the last hour of prices before going live (the first fetch of eth fails once)."""
        flaky = {"eth_price": 1}

        def history(start: float, end: float) -> list[tuple[float, dict[str, float]]]:
            if flaky.get(stream.name, 0) > 0:
                flaky[stream.name] -= 1
                raise ConnectionError("history archive timed out")
            return [
                (float(t), {"price": 100.0, "volume": 1.0}) for t in range(int(start), int(end), 60)
            ]

        now = time.time()
        for ts, payload in self.backfill.run(stream, now - 3600, now, history):
            executor.feed(stream, ts, payload)

    def refresh_allocations(self) -> None:
        """Equal weights for every strategy (a failure is logged; the next refresh retries)."""
        weights = {strategy_id(s): round(1 / len(self.strategies), 4) for s in self.strategies}
        path = f"/worlds/{WORLD}/allocations"
        self._call_worldservice("refreshing allocations", "PUT", path, {"allocations": weights})

    def canary(self) -> None:
        """Synthetic probe: re-diff one fixed DAG against the DAG Manager.

        A warm diff creates no queues (a new DAG per probe would orphan the previous
        version's queues and make OrphanQueuesGrowing fire on a healthy stack) but is
        counted in diff_requests_total, which DiffThroughputLow watches.
        """
        self.canaries += 1

        async def probe() -> None:
            client = DagManagerClient(
                f"{self.config.dagmanager.host}:{self.config.dagmanager.grpc_port}",
                timeout=30,
                token=self.config.dagmanager.admin_token,
            )
            try:
                await client.diff(
                    SubmissionRequest(strategy_id="canary", dag_json=CANARY_DAG, world_id="canary")
                )
            finally:
                await client.close()

        try:
            asyncio.run(probe())
        except Exception as exc:
            log.warning("canary diff failed: %s", exc)

    def run(self) -> None:
        prices = {id(e): 100.0 for e, _ in self.executors}
        next_canary = next_allocation = time.monotonic()
        tick = 0
        while not self.stop.is_set():
            started = time.monotonic()
            tick += 1
            for executor, stream in self.executors:
                prices[id(executor)] *= 1 + random.gauss(0, 0.002)
                executor.feed(
                    stream, time.time(), {"price": round(prices[id(executor)], 4), "volume": 1.0}
                )
            now = time.monotonic()
            if now >= next_canary:
                next_canary = now + self.canary_seconds
                if not self.faults.canary_paused:
                    threading.Thread(target=self.canary, daemon=True).start()
            if now >= next_allocation:
                next_allocation = now + self.allocation_seconds
                if not self.faults.allocations_paused:
                    self.refresh_allocations()
            self.stop.wait(max(0.0, 1 / self.rate - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qmtl.examples.demo_runner", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", help="qmtl.yml of the stack")
    parser.add_argument(
        "--rate", type=float, default=5.0, help="price ticks per second per strategy"
    )
    parser.add_argument("--canary-seconds", type=float, default=20.0)
    parser.add_argument("--allocation-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = resolve_config(args.config)
    setup_tracing("sdk", config)
    runner = DemoRunner(config, args.rate, args.canary_seconds, args.allocation_seconds)
    admin = start_admin_server(
        config.sdk.admin_port,
        config.sdk.host,
        token=config.sdk.admin_token,
        faults=runner.faults,
        on_faults=runner.faults_changed,
    )
    log.info("demo runner: metrics and admin on %s", admin.url)
    interrupt_on_ctrl_c_and_term()
    try:
        runner.prepare()
        # Once running, SIGTERM lets the tick in progress finish; until then it
        # interrupts at once (start-up may be waiting out a Gateway's retries).
        signal.signal(signal.SIGTERM, lambda *_: runner.stop.set())
        runner.run()
    except KeyboardInterrupt:
        pass
    finally:
        runner.recorder.close(timeout=5)
        admin.stop()
        shutdown_tracing()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
