"""
Kernel-level liveness: TCP keepalive and TCP_USER_TIMEOUT on a connection.

Heartbeats notice a silent peer; these make the kernel itself fail a
connection whose peer has vanished, in bounded time, even while the
process is busy writing to it (a vanished peer otherwise costs about
fifteen minutes of retransmissions before the kernel gives up).
"""

from __future__ import annotations

import math
import socket
from typing import Optional

PROBES = 3


def socket_of(transport: object) -> Optional[socket.socket]:
    """
    The TCP socket under C{transport}, looking through TLS and wrappers.
    """
    while transport is not None:
        getHandle = getattr(transport, "getHandle", None)
        handle = getHandle() if getHandle is not None else None
        if isinstance(handle, socket.socket):
            return handle
        transport = getattr(transport, "transport", None)
    return None


def keepalive_settings(interval: Optional[float], timeout: Optional[float]):
    """
    Tight kernel settings matching the heartbeat's own.

    Probes start after C{interval} seconds of idleness and C{PROBES} of them
    fit in what remains of C{timeout}; unacknowledged data fails the
    connection after C{timeout}.

    @return: C{(idle, probeInterval, probes, userTimeoutMilliseconds)}.
    """
    timeout = timeout or 90.0
    idle = max(1, math.ceil(interval or timeout / 2))
    probeInterval = max(1, math.ceil((timeout - idle) / PROBES))
    return idle, probeInterval, PROBES, max(1, round(timeout * 1000))


def enable_tcp_keepalive(
    transport: object, interval: Optional[float], timeout: Optional[float]
) -> bool:
    """
    Turn on TCP keepalive (and on Linux TCP_USER_TIMEOUT) for C{transport}.

    @return: whether it applied (not on UNIX sockets, for instance).
    """
    sock = socket_of(transport)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    idle, probeInterval, probes, userTimeout = keepalive_settings(interval, timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", probeInterval),
        ("TCP_KEEPCNT", probes),
        ("TCP_USER_TIMEOUT", userTimeout),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
    return True
