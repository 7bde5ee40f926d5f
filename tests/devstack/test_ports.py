"""free_port hands out ports outside the kernel's ephemeral range, each once, never a taken one."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from qmtl.devstack import free_port, processes
from qmtl.devstack.processes import ProcessError, port_range


def _ephemeral_low() -> int:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
        return int(handle.read().split()[0])


def test_ports_lie_below_the_ephemeral_range_where_clients_take_theirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("QMTL_PORT_RANGE", raising=False)
    low, high = port_range()
    assert high < _ephemeral_low() and low > 1024
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50  # never the same one twice
    assert all(low <= p <= high for p in ports)


def test_a_bound_port_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A range of two ports, the first held by a listener: only the second comes out."""
    low, high = port_range()
    with socket.socket() as taken:
        for held in range(low, high):
            if held + 1 in processes._handed_out or not _bindable(held + 1):
                continue
            try:
                taken.bind(("127.0.0.1", held))
                break
            except OSError:
                continue
        taken.listen()
        monkeypatch.setenv("QMTL_PORT_RANGE", f"{held}-{held + 1}")
        assert free_port() == held + 1


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize("spec", ["abc", "30000", "900-2000", "3000-2000", "60000-70000"])
def test_a_bad_port_range_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv("QMTL_PORT_RANGE", spec)
    with pytest.raises(ValueError, match=r"QMTL_PORT_RANGE.*LOW-HIGH"):
        free_port()


def test_an_exhausted_range_says_how_to_widen_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = taken.getsockname()[1]
        monkeypatch.setenv("QMTL_PORT_RANGE", f"{held}-{held}")
        with pytest.raises(ProcessError, match="set QMTL_PORT_RANGE"):
            free_port()


@pytest.mark.parametrize(
    ("ephemeral", "expected"),
    [
        ("32768\t60999\n", (20768, 32767)),  # Linux default
        ("1024\t40000\n", (40001, 52000)),  # no room below: above it
        ("1024\t65535\n", (1025, 65535)),  # all ephemeral: the bind check alone
        ("garbage", (20768, 32767)),  # unreadable: the Linux default
    ],
)
def test_the_default_range_fits_any_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ephemeral: str, expected: tuple[int, int]
) -> None:
    monkeypatch.delenv("QMTL_PORT_RANGE", raising=False)
    source = tmp_path / "ip_local_port_range"
    source.write_text(ephemeral)
    monkeypatch.setattr(processes, "EPHEMERAL_RANGE_FILE", source)
    assert port_range() == expected
    low, high = expected
    assert low <= free_port() <= high
