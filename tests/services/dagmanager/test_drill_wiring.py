"""Drills are wrappers installed at wiring time: the core has no fault branch, and what
the wrappers do is what the drill promises."""

from __future__ import annotations

from pathlib import Path

from qmtl.services.dagmanager.store import open_graph_store

from .conftest import make_service


def test_a_stalled_scheduler_skips_sweeps_but_a_manual_trigger_still_sweeps(
    tmp_path: Path,
) -> None:
    store = open_graph_store(f"sqlite:{tmp_path / 'g.db'}")
    try:
        service, _queues = make_service(store, drills=True)
        service.leader = True
        assert service.faults is not None
        service.faults.update({"gc_stall": True})
        service.gc_step()
        assert service.gc.completed_runs == 0
        service.gc.sweep()  # qmtl ops gc-trigger
        assert service.gc.completed_runs == 1
        service.faults.clear()
        service.gc_step()
        assert service.gc.completed_runs == 2
    finally:
        store.close()


def test_only_ports_that_say_they_are_local_let_a_diff_run_on_the_loop(tmp_path: Path) -> None:
    from qmtl.services.dagmanager.grpc_service import DagManagerServicer

    store = open_graph_store(f"sqlite:{tmp_path / 'g.db'}")
    try:
        plain, _ = make_service(store)
        drilled, _ = make_service(store, drills=True)
        assert plain.store.local and plain.queues.local
        assert DagManagerServicer(plain).inline
        assert not DagManagerServicer(drilled).inline  # the wrappers say they are not local
    finally:
        store.close()
