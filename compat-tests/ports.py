"""Listening ports for the brokers, S3 servers and proxies the tests start.

A port from `bind(("127.0.0.1", 0))` comes from the kernel's ephemeral range, and the kernel
may hand the same one out again as soon as it is released: a second call in a row, or a
client's outgoing connection in the moment before the broker binds it. Both happened (a
broker's HTTP listener got the port of its Kafka listener). So ports come from below the
ephemeral range instead, where the kernel never picks on its own, each one at most once per
process, and only if nothing is bound to it right now.
"""

from __future__ import annotations

import random
import socket
import threading

_LOWEST = 20000
_lock = threading.Lock()
_handed_out: set[int] = set()
# a random start, so that two processes that both pick ports (a benchmark next to the
# suite) are unlikely to walk the same sequence
_next = random.Random().randrange(1 << 16)


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HIGHEST = max(_LOWEST + 1000, _ephemeral_start()) - 1


def _bindable(port: int) -> bool:
    # no SO_REUSEADDR: a port with a connection in TIME_WAIT is skipped too
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A 127.0.0.1 port nothing is bound to, never handed out before by this process."""
    global _next
    span = _HIGHEST - _LOWEST + 1
    with _lock:
        for _ in range(span):
            port = _LOWEST + _next % span
            _next += 1
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    raise RuntimeError(f"no free port left in {_LOWEST}-{_HIGHEST}")
