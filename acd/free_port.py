"""A port for a server about to be started in another process (the demo, tests, benchmarks).

The usual trick, bind to port 0 and hand on the port the kernel chose, races with that very
server: when it binds something else to port 0 first (its FastAGI listener in the tests'
configuration) the kernel may give it the port just released, and the HTTP site then finds
its own port taken. A port below the kernel's ephemeral range (net.ipv4.ip_local_port_range)
is never handed out for port 0, so one found free there stays free for the server.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_SPAN = 8000  # ports below the ephemeral range to choose from


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, outside the ephemeral range where there is one."""
    low = _ephemeral_low()
    if low is not None and low - _SPAN >= 1024:
        for _ in range(200):
            port = random.randrange(low - _SPAN, low)
            if _bindable(port):
                return port
    with socket.socket() as s:  # elsewhere (no /proc): the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int | None:
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
