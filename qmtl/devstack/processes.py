"""The one process launcher of QMTL: ``qmtl up``, the tests and the benchmarks use it.

A :class:`ManagedProcess` is started in its own session with its PID recorded;
:meth:`~ManagedProcess.stop` signals exactly that PID (never a name).  Readiness is
polled, never slept for.

Children die with their parent: each one is exec'd through ``setpriv --pdeathsig TERM``
(util-linux, on every Debian), so the kernel sends it SIGTERM when the process that
started it dies -- also on SIGKILL, where no ``atexit`` handler runs.  The signal
follows the *thread* that started the child, so start processes from the main thread
(every caller here does).  The kernel only arms the signal if the parent is still alive
when ``setpriv`` asks for it, so the constructor returns only after ``setpriv`` has
exec'd the real program (the request is made just before that exec): a parent killed
right after starting a child can no longer slip through that window.  Normal exits
additionally stop every live child at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

__all__ = [
    "KILL_WAIT_SECONDS",
    "ManagedProcess",
    "ProcessError",
    "alive",
    "free_port",
    "http_ok",
    "live_processes",
    "port_range",
    "stop_all",
    "tcp_open",
    "wait_for",
]

_live: dict[int, ManagedProcess] = {}
_live_lock = threading.Lock()
_SETPRIV = shutil.which("setpriv")
_SETPRIV_EXE = os.path.realpath(_SETPRIV) if _SETPRIV else None


class ProcessError(RuntimeError):
    """A managed process failed to start, to become ready or to go; the message says which."""


#: How long a SIGKILLed process may take to go.  The kernel acts on SIGKILL only when the
#: process leaves uninterruptible sleep, such as an fsync (a service fsyncs its SQLite
#: files as it closes them).  One run of the full suite saw two services still there
#: 10 s and 5 s after SIGKILL; a saturated disk is the likeliest cause (not confirmed).
KILL_WAIT_SECONDS = 60.0


class Stoppable(Protocol):
    def stop(self) -> Any: ...


def stop_all(handles: Iterable[Stoppable | None]) -> None:
    """Stop every handle in order (``None`` skipped), even when one fails to stop; then
    raise one :class:`ProcessError` naming each that did."""
    failures = []
    for handle in handles:
        if handle is None:
            continue
        try:
            handle.stop()
        except ProcessError as exc:
            failures.append(str(exc))
    if failures:
        raise ProcessError("; ".join(failures))


#: How many ports below the kernel's ephemeral range :func:`free_port` uses by default.
PORT_SPAN = 12_000
#: Where Linux says which local ports outgoing connections take.
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_port_lock = threading.Lock()


def port_range() -> tuple[int, int]:
    """The ports :func:`free_port` hands out (inclusive): ``QMTL_PORT_RANGE=LOW-HIGH``, or
    the :data:`PORT_SPAN` ports just below the kernel's ephemeral range.

    Not ``bind(0)``: that port lies *inside* the ephemeral range, where every outgoing
    connection takes its local port too, so a readiness probe or a client could take it
    before the service that was given it had bound it ("address already in use", seen on
    a loaded CI machine).
    """
    spec = os.environ.get("QMTL_PORT_RANGE", "")
    if spec:
        try:
            low, high = (int(part) for part in spec.split("-"))
        except ValueError:
            low, high = 0, -1
        if not 1024 < low <= high < 65536:
            raise ValueError(
                f"QMTL_PORT_RANGE={spec!r} is not a port range; write LOW-HIGH with "
                "1024 < LOW <= HIGH < 65536, e.g. QMTL_PORT_RANGE=20000-29999"
            )
        return low, high
    try:
        low_text, high_text = EPHEMERAL_RANGE_FILE.read_text().split()[:2]
        ephemeral_low, ephemeral_high = int(low_text), int(high_text)
    except (OSError, ValueError):
        ephemeral_low, ephemeral_high = 32768, 60999
    if ephemeral_low - 1025 >= 1000:  # room below the ephemeral range (every stock kernel)
        return max(1025, ephemeral_low - PORT_SPAN), ephemeral_low - 1
    if 65535 - ephemeral_high >= 1000:  # a tuned kernel: room above it
        return ephemeral_high + 1, min(65535, ephemeral_high + PORT_SPAN)
    return 1025, 65535  # everything is ephemeral: the bind check is all we have


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` and not handed out before by this process."""
    low, high = port_range()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _port_lock:
        if len(_handed_out) > (high - low) // 2:
            _handed_out.clear()  # long-lived process: ports given long ago are fair again
        for _ in range(500):
            port = random.randint(low, high)
            if port in _handed_out:
                continue
            try:
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    sock.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise ProcessError(
        f"no free TCP port on {host} in {low}-{high} after 500 tries; "
        "free some or set QMTL_PORT_RANGE=LOW-HIGH to a range with free ports"
    )


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


#: Readiness probes poll every few tens of milliseconds: one client (an httpx client
#: builds an SSL context, milliseconds of CPU), no keep-alive (each probe is a fresh
#: connection, so a restarted process is never judged on a stale one).
_PROBE = httpx.Client(timeout=1.0, limits=httpx.Limits(max_keepalive_connections=0))


def http_ok(url: str, *, headers: Mapping[str, str] | None = None) -> bool:
    try:
        return _PROBE.get(url, headers=dict(headers or {})).status_code < 400
    except httpx.HTTPError:
        return False


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], object],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> object:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        result = predicate()
        if result:
            return result
        if alive is not None and not alive():
            raise ProcessError(f"{what}: process exited while waiting")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def live_processes() -> list[ManagedProcess]:
    """Every process this interpreter started and has not stopped yet."""
    with _live_lock:
        return list(_live.values())


class ManagedProcess:
    """A subprocess we own: started, waited for, and stopped by its PID."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        #: What :meth:`stop` sends first: the signal on which the program shuts down
        #: cleanly without waiting for anyone else.
        self.stop_signal = stop_signal
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        launch = self.argv
        if _SETPRIV is not None:
            launch = [_SETPRIV, "--pdeathsig", "TERM", "--", *self.argv]
        try:
            self.popen = subprocess.Popen(
                launch,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                user=user,
            )
        except OSError as exc:
            self._log.close()
            raise ProcessError(f"{name}: cannot start {self.argv[0]}: {exc.strerror}") from None
        self.pid = self.popen.pid
        self.frozen = False
        with _live_lock:
            _live[self.pid] = self
        if _SETPRIV_EXE is not None:
            wait_for(
                lambda: self.popen.poll() is not None or not self.running_setpriv(),
                timeout=30.0,
                interval=0.001,
                what=f"{name} to arm its parent-death signal",
            )

    def running_setpriv(self) -> bool:
        """Whether the child is still the ``setpriv`` wrapper (death signal not armed yet)."""
        try:
            return os.readlink(f"/proc/{self.pid}/exe") == _SETPRIV_EXE
        except OSError:
            return False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, predicate: Callable[[], object], *, timeout: float = 30.0) -> None:
        try:
            wait_for(
                predicate, timeout=timeout, what=f"{self.name} to become ready", alive=self.alive
            )
        except (TimeoutError, ProcessError) as exc:
            self.stop()
            raise ProcessError(
                f"{exc}\n--- {self.name} log ({self.log_path}) ---\n{self.log_tail()}"
            ) from None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def freeze(self) -> None:
        """SIGSTOP the process and every process it started: a hang drill -- sockets stay
        open, nothing answers.  :meth:`thaw` undoes it.

        By the PID tree under our own PID, not the process group: PostgreSQL puts each
        backend in a session of its own.
        """
        if not self.alive():
            return
        self.frozen = True
        stopped: set[int] = set()
        while True:  # the parent first, so it forks nothing new; then until none is left
            todo = [p for p in (self.pid, *_descendants(self.pid)) if p not in stopped]
            if not todo:
                return
            for pid in todo:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)

    def thaw(self) -> None:
        if self.frozen and self.alive():
            for pid in (self.pid, *_descendants(self.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        self.frozen = False

    def kill(self) -> None:
        """SIGKILL (a crash drill); the handle stays registered until :meth:`stop`."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0, *, kill_wait: float = KILL_WAIT_SECONDS) -> int | None:
        """Send :attr:`stop_signal` (SIGTERM unless set), SIGKILL after ``timeout``; return
        the exit code.

        Raises :class:`ProcessError` if it is still there ``kill_wait`` seconds after
        SIGKILL (it stays registered, so the exit handler tries once more).
        """
        self.thaw()  # a stopped process group would never see the stop signal
        if self.alive():
            try:
                os.kill(self.pid, self.stop_signal)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                try:
                    self.popen.wait(timeout=kill_wait)
                except subprocess.TimeoutExpired:
                    raise ProcessError(
                        f"{self.name} (pid {self.pid}) did not exit within {timeout:.0f} s of "
                        f"{signal.Signals(self.stop_signal).name} and is still there "
                        f"{kill_wait:.0f} s after SIGKILL: it is blocked in the kernel (see "
                        f"/proc/{self.pid}/stack and the disk's load); its log is {self.log_path}"
                    ) from None
            except ProcessLookupError:
                pass
        with _live_lock:
            _live.pop(self.pid, None)
        if not self._log.closed:
            self._log.close()
        return self.popen.returncode

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} alive={self.alive()}>"


def _descendants(root: int) -> list[int]:
    """PIDs of every process below ``root`` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


@atexit.register
def _stop_leftovers() -> None:
    for proc in live_processes():
        try:
            proc.stop(timeout=5)
        except ProcessError as exc:  # the others still get stopped
            print(f"qmtl: {exc}", file=sys.stderr)
