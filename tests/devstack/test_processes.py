"""The process launcher: children die with their parent, even when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qmtl.devstack import processes
from qmtl.devstack.processes import (
    ManagedProcess,
    ProcessError,
    alive,
    live_processes,
    stop_all,
    wait_for,
)

PARENT = r"""
import sys, time
from pathlib import Path
from qmtl.devstack.processes import ManagedProcess
child = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
                       log_path=Path(sys.argv[1]) / "child.log")
print(child.pid, flush=True)
time.sleep(120)
"""


def test_child_dies_when_its_parent_is_sigkilled(tmp_path: Path) -> None:
    """atexit cannot run on SIGKILL; the parent-death signal still stops the child."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert alive(child_pid)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=10)
    wait_for(lambda: not alive(child_pid), timeout=10, what="the orphaned child to exit")


def test_alive_reports_dead_and_live_pids() -> None:
    assert alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not alive(proc.pid)


def test_launcher_returns_only_once_the_death_signal_is_armed(tmp_path: Path) -> None:
    """Returning while ``setpriv`` still runs would let a parent killed now orphan the child."""
    for i in range(20):
        child = ManagedProcess(
            f"sleeper{i}",
            [sys.executable, "-c", "import time; time.sleep(60)"],
            log_path=tmp_path / f"child{i}.log",
        )
        try:
            assert not child.running_setpriv()
            assert os.readlink(f"/proc/{child.pid}/exe") == os.path.realpath(sys.executable)
        finally:
            child.stop()


#: A child that ignores SIGTERM (as a service stuck in its shutdown does), says so and
#: waits for signals until SIGKILL.  It ignores the launcher's parent-death signal too
#: (TERM), so an alarm ends it should the test process die without stopping it.
STUBBORN = (
    "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.alarm(120); "
    "print('ready', flush=True)\nwhile True: signal.pause()"
)


def _stubborn(tmp_path: Path, name: str) -> ManagedProcess:
    child = ManagedProcess(
        name, [sys.executable, "-c", STUBBORN], log_path=tmp_path / f"{name}.log"
    )
    wait_for(lambda: "ready" in child.log_tail(), timeout=30, what=f"{name} to ignore SIGTERM")
    return child


def test_a_child_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    child = _stubborn(tmp_path, "stubborn")
    assert child.stop(timeout=0.5) == -signal.SIGKILL
    assert not alive(child.pid) and child not in live_processes()


def test_a_child_still_there_after_sigkill_is_named_and_the_others_are_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process in uninterruptible sleep gets SIGKILL only when it wakes; until then
    ``stop`` must neither hang nor give up on the other processes.  The kernel's delay is
    played by holding back the SIGKILL of one child."""
    stuck, other = _stubborn(tmp_path, "stuck"), _stubborn(tmp_path, "other")
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        if not (pid == stuck.pid and sig == signal.SIGKILL):
            real_kill(pid, sig)

    monkeypatch.setattr(processes.os, "kill", kill)
    try:
        with pytest.raises(ProcessError) as failed:
            stop_all([None, _Stops(stuck), _Stops(other)])
        message = str(failed.value)
        assert f"stuck (pid {stuck.pid})" in message and "after SIGKILL" in message
        assert str(stuck.log_path) in message and "other" not in message
        assert not alive(other.pid)  # stopped although the one before it would not go
        assert alive(stuck.pid) and stuck in live_processes()  # the exit handler retries it
    finally:
        monkeypatch.undo()
        stuck.stop(timeout=0.5)
    assert not alive(stuck.pid)


class _Stops:
    """A handle as the stack holds one: ``stop()`` with the launcher's default timeout
    cut short so the test takes a second, not ten."""

    def __init__(self, process: ManagedProcess) -> None:
        self.process = process

    def stop(self) -> None:
        self.process.stop(timeout=0.5, kill_wait=0.5)
