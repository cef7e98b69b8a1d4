"""
What the server's log and HTTP answers say, as an operator reads them: one
line per event, with the real reason, and no line for routine requests.
"""

import socket
import struct
import time
from urllib.request import urlopen

import pytest

from .processes import wait_for
from .webserver import WebServer, raw_page


@pytest.fixture(scope="module")
def server():
    server = WebServer("--interval", "0.2", "--timeout", "0.6",
                       "--max-line-length", "100",
                       ports=("port", "websocket-port", "status-port"))
    yield server
    server.stop()


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (with a zero mask, so the payload shows)."""
    if len(payload) < 126:
        length = bytes([0x80 | len(payload)])
    else:
        length = bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return bytes([0x80 | opcode]) + length + b"\0\0\0\0" + payload


def name(sock):
    return "127.0.0.1:%d" % sock.getsockname()[1]


def lines_about(server, peer, ending="disconnected"):
    """The log's lines about C{peer}, once one of them says C{ending};
    without their timestamp and logger."""

    def about():
        found = [line.split("] ", 1)[1] for line in server.log().splitlines()
                 if f"] {peer} " in line]
        return found if any(ending in line for line in found) else None

    found = wait_for(about, 10, what=f"a line saying {ending!r}")
    # Autobahn's lines name the peer in their own way.
    assert not [line for line in server.log().splitlines() if f"tcp4:{peer}" in line]
    return found


def test_a_websocket_timeout_is_said_once_with_its_reason(server):
    """A silent page: the timeout, then its end for that reason; nothing
    blames the closing handshake it never answered."""
    page = raw_page(server.ports["websocket-port"])
    peer = name(page)
    try:
        lines = lines_about(server, peer)
    finally:
        page.close()
    assert len(lines) == 3, lines
    assert lines[0] == f"{peer} connected (websocket)"
    assert lines[1].startswith(f"{peer} silent for 0.6")
    assert lines[2] == f"{peer} disconnected: 4000 heartbeat timeout"


@pytest.mark.parametrize("size", [200, 5000])
def test_a_message_over_the_limit_is_said_once(server, size):
    """Over the limit (below Autobahn's own, or above it): one line for
    the message, one for the close it caused."""
    page = raw_page(server.ports["websocket-port"])
    peer = name(page)
    try:
        page.sendall(frame(1, b"x" * size))
        lines = lines_about(server, peer)
    finally:
        page.close()
    assert lines[1:] == [
        f"{peer} sent a message of {size} bytes, over the 100-byte limit",
        f"{peer} disconnected: 1009 message too big",
    ]


@pytest.mark.parametrize("payload, said", [
    (b"", "1005 no status"),
    (struct.pack("!H", 1000), "1000 normal closure"),
    (struct.pack("!H", 4321) + b"done here", "4321 done here"),
])
def test_a_page_that_closes_is_said_to_with_its_code(server, payload, said):
    """A page's close reads as its code and reason, or what the code means;
    no status code at all is RFC 6455's 1005."""
    page = raw_page(server.ports["websocket-port"])
    peer = name(page)
    try:
        page.sendall(frame(8, payload))
        lines = lines_about(server, peer)
    finally:
        page.close()
    assert lines[-1] == f"{peer} disconnected: {said}"


def test_a_line_timeout_is_said_as_the_reason(server):
    """A silent line peer ends for the heartbeat, not for an abort."""
    sock = socket.create_connection(("127.0.0.1", server.ports["port"]))
    try:
        lines = lines_about(server, name(sock))
    finally:
        sock.close()
    assert lines[-1].endswith(" disconnected: heartbeat timeout")


def test_the_status_port_keeps_no_access_log(server):
    """Scrapes and page loads of the status port add nothing to the log."""
    before = server.log()
    for path in ("/metrics", "/status.json", "/"):
        assert urlopen(server.url("status-port", path)).status == 200
    time.sleep(0.2)
    assert server.log().count('"GET ') == before.count('"GET ')


def test_a_plain_get_on_the_websocket_port_is_426_upgrade_required(server):
    """A browser pointed at the WebSocket port gets the standard phrase."""
    with socket.create_connection(("127.0.0.1", server.ports["websocket-port"])) as web:
        web.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert web.recv(4096).split(b"\r\n")[0] == b"HTTP/1.1 426 Upgrade Required"
