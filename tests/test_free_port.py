"""acd.free_port: a port for a server started in another process, which that server's own
binds to port 0 cannot take first (CI: its FastAGI listener got the HTTP site's port)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import acd.free_port
from acd.free_port import free_port


def test_the_port_is_free_and_below_the_ports_the_kernel_hands_out_for_port_0() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(1024 <= p < low for p in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    taken = []  # what a server binding to port 0 gets meanwhile: never one of those
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        taken.append(s)
    assert not ports & {s.getsockname()[1] for s in taken}
    for s in taken:
        s.close()


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_port()))
        busy.listen()
        held = busy.getsockname()[1]
        spare = free_port()
        picks = iter([held, held, spare])
        monkeypatch.setattr(acd.free_port.random, "randrange", lambda *_: next(picks))
        assert free_port() == spare
