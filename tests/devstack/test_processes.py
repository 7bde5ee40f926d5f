"""The process launcher: children die with their parent, even when it is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from qmtl.devstack.processes import alive, wait_for

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
    from qmtl.devstack.processes import ManagedProcess

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
