"""
The listen backlog: a crowd reconnecting at once is queued by the kernel,
not turned away, unless the endpoint description sets its own backlog.
"""

import select
import socket
import time

import pytest
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol

from heartbeat._service.listener import LISTEN_BACKLOG, Listener, with_backlog


@pytest.mark.parametrize(
    "description, expected",
    [
        ("tcp:1234", f"tcp:1234:backlog={LISTEN_BACKLOG}"),
        ("tcp:1234:interface=127.0.0.1", f"tcp:1234:interface=127.0.0.1:backlog={LISTEN_BACKLOG}"),
        ("tcp6:1234", f"tcp6:1234:backlog={LISTEN_BACKLOG}"),
        ("ssl:1234:privateKey=k.pem:certKey=c.pem",
         f"ssl:1234:privateKey=k.pem:certKey=c.pem:backlog={LISTEN_BACKLOG}"),
        ("unix:/run/hb.sock", f"unix:/run/hb.sock:backlog={LISTEN_BACKLOG}"),
        ("tcp:1234:backlog=7", "tcp:1234:backlog=7"),
        ("unix:/run/hb.sock:backlog=7:mode=660", "unix:/run/hb.sock:backlog=7:mode=660"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ],
)
def test_the_backlog_is_added_unless_set(description, expected):
    """Every port that takes a backlog gets the large one, unless its
    description sets one; other endpoint types are left as they are."""
    assert with_backlog(description) == expected


def connected_within(port, count, seconds):
    """
    Open C{count} connections to C{port} at once, none accepted; how many
    the kernel completes within C{seconds}.
    """
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            socks.append(sock)
        deadline = time.monotonic() + seconds
        pending, done = set(socks), 0
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], list(pending), [], 0.05)
            for sock in writable:
                pending.discard(sock)
                done += sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        return done
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("backlog, admitted", [(None, 500), (50, 51)])
def test_a_crowd_is_queued_until_the_server_accepts(backlog, admitted):
    """500 clients connecting while the server is busy all get through the
    kernel's queue by default; with backlog=50 in --port, as Twisted's
    default, the kernel holds 51 and drops the others' attempts (each would
    retry a second later)."""
    reactor = EPollReactor()
    description = "tcp:0:interface=127.0.0.1"
    if backlog is not None:
        description += f":backlog={backlog}"
    listener = Listener("port", description, Factory.forProtocol(Protocol), reactor)
    listener.privilegedStartService()
    ports = []
    listener._waitingForPort.addCallback(ports.append)
    try:
        # The reactor never runs: nothing is accepted.
        assert connected_within(ports[0].getHost().port, 500, 0.5) == admitted
    finally:
        ports[0].connectionLost(None)
