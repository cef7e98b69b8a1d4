"""
Heartbeats over WebSocket: two Autobahn peers in memory, a fake clock.
"""

import json

import pytest
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.test import iosim

from heartbeat import BroadcastServerProtocol, HeartbeatServerFactory
from heartbeat._client.websocket import HeartbeatWebSocketClientFactory
from heartbeat._core.wheel import TimingWheel
from heartbeat._framing.websocket import parse_app_heartbeat, timers_on
from heartbeat._server.websocket import (
    BroadcastWebSocketServerProtocol,
    HeartbeatWebSocketServerFactory,
)

from .helpers import connect, lose
from .test_client import FakeEndpoint
from .webserver import HANDSHAKE

SLOT = TimingWheel.resolution


class Browser(WebSocketClientProtocol):
    """
    A peer like a browser page: its WebSocket stack answers ping frames; its
    script sees only messages, and answers JSON pings when C{answering}.
    """

    answering = True

    def __init__(self):
        super().__init__()
        self.messages = []
        self.pings = []
        self.closed = None

    def onPing(self, payload):
        self.pings.append(payload)
        super().onPing(payload)

    def onMessage(self, payload, isBinary):
        self.messages.append(payload if isBinary else payload.decode())
        if self.answering and payload.startswith(b'{"type":"ping"'):
            message = json.loads(payload)
            self.sendMessage(json.dumps({"type": "pong", "t": message["t"]}).encode())

    def onClose(self, wasClean, code, reason):
        self.closed = (code, reason)

    def app(self):
        """The messages that are not heartbeats."""
        return [m for m in self.messages
                if isinstance(m, bytes) or parse_app_heartbeat(m.encode()) is None]


def make_server(clock, protocol=None, **kwargs):
    kwargs.setdefault("heartbeatInterval", 1.0)
    kwargs.setdefault("heartbeatTimeout", 3.0)
    hub = HeartbeatServerFactory(clock=clock, **kwargs)
    factory = HeartbeatWebSocketServerFactory(hub)
    if protocol is not None:
        factory.protocol = protocol
    return hub, factory


def open_browser(clock, factory, page=None, protocols=()):
    """Connect a Browser (or C{page}, offering C{protocols}) to C{factory} in
    memory; return both ends and the pump."""
    client = WebSocketClientFactory("ws://127.0.0.1/", protocols=list(protocols))
    client.protocol = page or Browser
    browser = client.buildProtocol(None)
    server = factory.buildProtocol(None)
    pump = iosim.connect(
        server, iosim.makeFakeServer(server), browser, iosim.makeFakeClient(browser),
        clock=clock,
    )
    return server, browser, pump


def run(clock, pump, seconds, step=0.25):
    for _ in range(round(seconds / step)):
        clock.advance(step)
        pump.flush(advanceClock=False)


def goodbye(*pumps):
    """Each page closes its connection, and the closes complete."""
    for pump in pumps:
        if pump.client.state == WebSocketClientProtocol.STATE_OPEN:
            pump.client.sendClose(1000)
        pump.flush()


def mute(pump):
    """From now on nothing the client sends reaches the server."""
    pump.clientIO.write = lambda data: None


def test_app_heartbeats_parse_and_others_do_not():
    """Only small JSON objects typed ping, pong or hello are heartbeats."""
    assert parse_app_heartbeat(b'{"type":"ping","t":3}') == ("ping", 3)
    assert parse_app_heartbeat(b'{"type": "pong"}') == ("pong", None)
    assert parse_app_heartbeat(b'{"type":"hello","interval":1}') == ("hello", None)
    for other in [b'{"type":"chat"}', b"ping", b"[1]", b"{bad", b'{"t":1}',
                  b'{"type":"ping","pad":"' + b"x" * 3000 + b'"}', b"{\xff}"]:
        assert parse_app_heartbeat(other) is None


def test_mixin_works_on_plain_autobahn_protocols(clock):
    """Users' own Autobahn protocols get heartbeats by mixing in: peers that
    answer stay, one that falls silent gets a close frame at the timeout."""
    from autobahn.twisted.websocket import (
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )

    from heartbeat.websocket import WebSocketHeartbeat

    class Server(WebSocketHeartbeat, WebSocketServerProtocol):
        heartbeatInterval, heartbeatTimeout = 1.0, 3.0

    class Client(WebSocketHeartbeat, WebSocketClientProtocol):
        heartbeatInterval, heartbeatTimeout = 1.0, 3.0

    serverFactory = WebSocketServerFactory()
    serverFactory.protocol = Server
    clientFactory = WebSocketClientFactory("ws://127.0.0.1/")
    clientFactory.protocol = Client
    for factory in (serverFactory, clientFactory):
        factory.clock = clock
        factory._batched_timer = timers_on(clock)
    server, client = serverFactory.buildProtocol(None), clientFactory.buildProtocol(None)
    pump = iosim.connect(
        server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client),
        clock=clock,
    )
    run(clock, pump, 10)
    assert server.heartbeatRtt is not None and client.heartbeatRtt is not None
    assert not pump.serverIO.disconnecting
    mute(pump)
    run(clock, pump, 2.75)
    assert not pump.serverIO.disconnecting
    run(clock, pump, 0.5)
    assert server.localCloseCode == 4000
    run(clock, pump, 1.0)
    assert pump.serverIO.disconnected


def test_without_a_close_handshake_timeout_a_dead_peer_is_aborted_at_once(clock):
    """With Autobahn's closeHandshakeTimeout at 0 nothing would end a close
    that gets no answer, so the connection is aborted at the timeout."""
    hub, factory = make_server(clock)
    factory.setProtocolOptions(closeHandshakeTimeout=0)
    server, browser, pump = open_browser(clock, factory)
    mute(pump)
    run(clock, pump, 3.25)
    assert pump.serverIO.disconnected and server.localCloseCode is None
    assert hub.connections == set() and clock.getDelayedCalls() == []


def test_open_joins_the_line_server_and_says_hello(clock):
    """A page is one more connection of the server and learns its timing
    and its message limit, written as the handshake writes them (whole
    seconds as integers)."""
    hub, factory = make_server(clock, maxLineLength=1000)
    server, browser, pump = open_browser(clock, factory)
    assert hub.connections == {server}
    assert browser.messages[0] == (
        '{"type":"hello","interval":1,"timeout":3,"pongTimeout":5,"maxLength":1000}')
    goodbye(pump)
    assert hub.connections == set()
    assert clock.getDelayedCalls() == []


def test_silent_page_gets_a_ping_frame_and_a_json_ping(clock):
    """After an interval of silence both pings go out, not before."""
    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory)
    clock.advance(1.0 - 2 * SLOT)
    pump.flush(advanceClock=False)
    assert browser.pings == [] and len(browser.messages) == 1
    clock.advance(2 * SLOT)
    pump.flush(advanceClock=False)
    assert browser.pings == [b"1"]
    assert json.loads(browser.messages[-1]) == {"type": "ping", "t": 1}
    assert hub.pingsSent == 1
    goodbye(pump)
    assert clock.getDelayedCalls() == []


def test_pong_frame_measures_the_round_trip(clock):
    """The browser stack's pong gives the RTT; the script's later pong
    changes nothing."""
    hub, factory = make_server(clock)
    samples = []
    hub.roundTripMeasured = lambda protocol, rtt: samples.append(rtt)
    server, browser, pump = open_browser(clock, factory)
    clock.advance(1.0)
    # The ping waits in the server's buffer; it and both answers travel
    # at this flush, 0.05 s later.
    clock.advance(0.05)
    pump.flush(advanceClock=False)
    assert server.heartbeatRtt == pytest.approx(0.05)
    assert samples == [pytest.approx(0.05)]
    goodbye(pump)
    assert clock.getDelayedCalls() == []


def test_frozen_page_is_kept_alive_by_its_stack(clock):
    """A page whose script no longer answers stays connected: its browser
    answers ping frames."""
    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory)
    browser.answering = False
    run(clock, pump, 10)
    assert browser.closed is None
    assert hub.connections == {server}
    assert hub.timeouts == 0


def test_silent_peer_gets_a_close_frame_then_an_abort(clock):
    """Silent past the timeout: close code 4000 with a reason at once, and
    the connection aborted when no close answer comes."""
    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory)
    mute(pump)
    run(clock, pump, 2.75)
    assert browser.closed is None and not pump.serverIO.disconnecting
    run(clock, pump, 0.5)
    assert hub.timeouts == 1
    assert server.localCloseCode == 4000
    assert server.localCloseReason == b"heartbeat timeout"
    assert not pump.serverIO.disconnected
    run(clock, pump, 1.0)
    assert pump.serverIO.disconnected
    assert hub.connections == set()
    pump.flush()
    # A page that was only deaf, not dead, hears why.
    assert browser.closed == (4000, "heartbeat timeout")
    assert clock.getDelayedCalls() == []


def test_json_ping_is_answered_and_not_delivered(clock):
    """A page's own ping comes back as a pong with the same t, and never
    reaches the application."""
    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory)
    got = []
    server.messageReceived = lambda payload, isBinary: got.append(payload)
    browser.sendMessage(b'{"type":"ping","t":"abc"}')
    pump.flush()
    assert json.loads(browser.messages[-1]) == {"type": "pong", "t": "abc"}
    assert got == [] and hub.pingsReceived == 1
    goodbye(pump)
    assert clock.getDelayedCalls() == []


def test_text_and_binary_are_echoed_as_they_came(clock):
    """Echo keeps a text message text and a binary one binary."""
    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory)
    browser.sendMessage("héllo".encode())
    browser.sendMessage(b"\x00\xff", isBinary=True)
    browser.sendMessage(b'{"type":"chat"}')
    pump.flush()
    assert browser.app() == ["héllo", b"\x00\xff", '{"type":"chat"}']
    goodbye(pump)
    assert clock.getDelayedCalls() == []


def test_broadcast_joins_line_and_websocket_peers(clock):
    """A page's message reaches line peers as a line, and a line reaches
    pages: as text, or as binary when it is not UTF-8."""
    hub, factory = make_server(clock, protocol=BroadcastWebSocketServerProtocol)
    hub.protocol = BroadcastServerProtocol
    line, transport = connect(hub)
    # Its first line settles it: it hears broadcasts from then on.
    line.dataReceived(b"pong\n")
    server, browser, pump = open_browser(clock, factory)
    other, otherBrowser, otherPump = open_browser(clock, factory)
    browser.sendMessage(b"from the page")
    pump.flush()
    otherPump.flush()
    assert transport.value() == b"from the page\n"
    assert otherBrowser.app() == ["from the page"] and browser.app() == []
    line.dataReceived(b"from a line\n\xff\xfe\n")
    pump.flush()
    assert browser.app() == ["from a line", b"\xff\xfe"]
    lose(line)
    goodbye(pump, otherPump)
    assert clock.getDelayedCalls() == []


def test_message_with_a_newline_is_refused(clock):
    """A message that no line peer could receive whole is refused with a
    close that says why; other connections are untouched."""
    hub, factory = make_server(clock, protocol=BroadcastWebSocketServerProtocol)
    line, transport = connect(hub)
    server, browser, pump = open_browser(clock, factory)
    browser.sendMessage(b"two\nlines")
    pump.flush()
    assert browser.closed == (4007, "a message must not contain a newline")
    assert transport.value() == b"" and not transport.disconnecting
    assert hub.connections == {line}
    lose(line)
    assert clock.getDelayedCalls() == []


def test_message_over_the_line_limit_is_refused(clock):
    """A message longer than --max-line-length closes with 1009."""
    hub, factory = make_server(clock, maxLineLength=10)
    server, browser, pump = open_browser(clock, factory)
    browser.sendMessage(b"x" * 10)
    browser.sendMessage(b"y" * 11)
    pump.flush()
    assert browser.app() == ["x" * 10]
    assert browser.closed[0] == 1009
    # Heartbeats are longer than this limit, and go out all the same.
    assert json.loads(browser.messages[0])["type"] == "hello"
    assert clock.getDelayedCalls() == []


def test_full_server_refuses_a_page_with_4013(clock):
    """Past --max-connections a page hears 'server full'; the served
    connection is untouched and the refusal counted."""
    hub, factory = make_server(clock, maxConnections=1)
    line, transport = connect(hub)
    server, browser, pump = open_browser(clock, factory)
    assert browser.closed == (4013, "server full")
    # Nothing before the close, which a page would take for being served.
    assert browser.messages == []
    assert hub.refused == 1 and hub.connections == {line}
    line.dataReceived(b"ping x\n")
    assert transport.value() == b"pong x\n"
    lose(line)
    assert clock.getDelayedCalls() == []


def test_a_page_joins_only_once_authenticated(clock):
    """With an auth token, a page must send 'auth <token>' first: until then
    it hears no broadcast, and a wrong first message closes it with 4001."""
    hub, factory = make_server(clock, protocol=BroadcastWebSocketServerProtocol,
                               authToken=b"s3cret")
    hub.protocol = BroadcastServerProtocol
    line, _ = connect(hub)
    line.dataReceived(b"auth s3cret\n")
    stranger, strangerBrowser, strangerPump = open_browser(clock, factory)
    member, memberBrowser, memberPump = open_browser(clock, factory)
    line.dataReceived(b"too early\n")
    memberBrowser.sendMessage(b"auth s3cret")
    strangerBrowser.sendMessage(b"auth guess")
    memberPump.flush()
    strangerPump.flush()
    line.dataReceived(b"news\n")
    memberPump.flush()
    strangerPump.flush()
    assert memberBrowser.app() == ["news"]
    assert strangerBrowser.closed == (4001, "unauthorized")
    assert strangerBrowser.messages == []
    assert hub.connections == {line, member}
    lose(line)
    goodbye(memberPump)
    assert clock.getDelayedCalls() == []


def test_a_page_that_never_authenticates_is_closed(clock):
    """No auth message within the auth timeout: closed with 4001."""
    hub, factory = make_server(clock, authToken=b"s3cret", authTimeout=2.0)
    server, browser, pump = open_browser(clock, factory)
    browser.answering = False  # a JSON pong would be a first message too
    run(clock, pump, 1.75)
    assert browser.closed is None
    run(clock, pump, 0.5)
    assert browser.closed == (4001, "unauthorized")
    assert clock.getDelayedCalls() == []


def test_kernel_keepalive_covers_pages_too(clock, monkeypatch):
    """--tcp-keepalive applies to WebSocket connections, with the same timing."""
    import heartbeat._server.admission

    calls = []
    monkeypatch.setattr(heartbeat._server.admission, "enable_tcp_keepalive",
                        lambda transport, interval, timeout: calls.append((interval, timeout)))
    hub, factory = make_server(clock, tcpKeepalive=True)
    open_browser(clock, factory)
    assert calls == [(1.0, 3.0)]


def test_a_page_owing_its_auth_counts_and_hears_no_json_ping(clock):
    """A page yet to authenticate holds a place under --max-connections (a
    line peer past it is refused) and gets ping frames but no JSON ping,
    which a page would take for being served."""
    hub, factory = make_server(clock, maxConnections=1, authToken=b"s3cret",
                               authTimeout=2.5)
    server, browser, pump = open_browser(clock, factory)
    line, transport = connect(hub)
    assert transport.value() == b"error server full\n"
    assert hub.connections == {server} and hub.refused == 1
    run(clock, pump, 2.25)
    assert browser.pings == [b"1", b"2"] and browser.messages == []
    browser.sendMessage(b"auth s3cret")
    pump.flush()
    assert [json.loads(m)["type"] for m in browser.messages] == ["hello"]
    run(clock, pump, 1.0)
    assert json.loads(browser.messages[-1]) == {"type": "ping", "t": 3}
    lose(line)
    goodbye(pump)
    assert clock.getDelayedCalls() == []


# What a page sends after the server closes it


def frame(payload, opcode=1):
    """One masked frame, as a page's browser sends it."""
    mask = b"\x01\x02\x03\x04"
    header = bytes([0x80 | opcode, 0x80 | len(payload)])
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("case, code, hub_kwargs", [
    ("wrong token", 4001, {"authToken": b"s3cret"}),
    ("server full", 4013, {"maxConnections": 1}),
    ("newline", 4007, {}),
    ("silent past the timeout", 4000, {}),
])
def test_nothing_gets_through_once_the_server_closes(clock, case, code, hub_kwargs):
    """A page the server refuses or closes cannot slip a message to the
    others, even in the same write as what got it closed."""
    hub, factory = make_server(clock, protocol=BroadcastWebSocketServerProtocol,
                               **hub_kwargs)
    hub.protocol = BroadcastServerProtocol
    line, transport = connect(hub)
    line.dataReceived(b"auth s3cret\n" if "authToken" in hub_kwargs else b"pong\n")
    page, pageTransport = connect(factory)
    first = {"wrong token": frame(b"auth guess"), "newline": frame(b"a\nb")}.get(case, b"")
    if case == "silent past the timeout":
        page.dataReceived(HANDSHAKE)
        for _ in range(13):
            clock.advance(0.25)
            line.dataReceived(b"pong\n")
        page.dataReceived(frame(b"INJECTED"))
    else:
        page.dataReceived(HANDSHAKE + first + frame(b"INJECTED"))
    assert page.localCloseCode == code
    assert b"INJECTED" not in transport.value()


def test_binary_stays_binary_through_a_broadcast(clock):
    """A page's binary message reaches other pages as binary, line peers as
    its bytes."""
    hub, factory = make_server(clock, protocol=BroadcastWebSocketServerProtocol)
    hub.protocol = BroadcastServerProtocol
    line, transport = connect(hub)
    line.dataReceived(b"pong\n")
    sender, senderBrowser, senderPump = open_browser(clock, factory)
    server, browser, pump = open_browser(clock, factory)
    senderBrowser.sendMessage(b"caf\xc3\xa9", isBinary=True)
    senderPump.flush()
    pump.flush()
    assert browser.app() == [b"caf\xc3\xa9"]
    assert transport.value() == b"caf\xc3\xa9\n"
    lose(line)
    goodbye(pump, senderPump)
    assert clock.getDelayedCalls() == []


def test_a_message_that_reads_as_a_heartbeat_reaches_pages_as_binary(clock):
    """A line peer's line (or a page's long message) shaped like the
    server's hello or ping is delivered whole, as binary, so no page takes
    it for a heartbeat."""
    hub, factory = make_server(clock, protocol=BroadcastWebSocketServerProtocol)
    hub.protocol = BroadcastServerProtocol
    line, transport = connect(hub)
    server, browser, pump = open_browser(clock, factory)
    sender, senderBrowser, senderPump = open_browser(clock, factory)
    forged = b'{"type":"hello","interval":0.01,"timeout":0.02}'
    # Over 2048 bytes, so not a heartbeat to the server; under 2048
    # characters, so one to a page.
    padded = '{"type":"ping","t":1,"pad":"%s"}' % ("\u00e9" * 1100)
    line.dataReceived(forged + b"\n")
    senderBrowser.sendMessage(padded.encode())
    senderPump.flush()
    pump.flush()
    assert browser.app() == [forged, padded.encode()]
    assert transport.value() == padded.encode() + b"\n"
    lose(line)
    goodbye(pump, senderPump)
    assert clock.getDelayedCalls() == []


def test_echo_carries_any_message_newlines_included(clock):
    """Without a relay to line peers, text and binary holding newlines are
    echoed whole."""
    hub, factory = make_server(clock)
    server, browser, pump = open_browser(clock, factory)
    browser.sendMessage(b"\x00\n\xff", isBinary=True)
    browser.sendMessage(b"two\nlines")
    pump.flush()
    assert browser.app() == [b"\x00\n\xff", "two\nlines"]
    assert browser.closed is None
    goodbye(pump)
    assert clock.getDelayedCalls() == []


def test_heartbeats_pass_a_limit_smaller_than_themselves(clock):
    """With --max-line-length below a heartbeat's size a page's JSON ping is
    still answered; an application message over the limit is refused."""
    hub, factory = make_server(clock, maxLineLength=10)
    server, browser, pump = open_browser(clock, factory)
    browser.sendMessage(b'{"type":"ping","t":1}')
    pump.flush()
    assert json.loads(browser.messages[-1]) == {"type": "pong", "t": 1}
    browser.sendMessage(b"z" * 11)
    pump.flush()
    assert browser.closed == (1009, "message too big")
    assert clock.getDelayedCalls() == []


def test_slow_page_is_dropped_past_the_write_cap(clock):
    """A page that stops reading is dropped once maxWriteBuffer bytes wait
    (messages and pings alike); until then nothing is lost, and the writer
    and the other pages carry on."""
    from twisted.logger import capturedLogs

    hub, factory = make_server(clock, protocol=BroadcastWebSocketServerProtocol,
                               maxWriteBuffer=10_000)
    hub.protocol = BroadcastServerProtocol
    writer, writerTransport = connect(hub)
    slow, transport = connect(factory)
    slow.dataReceived(HANDSHAKE)
    other, otherBrowser, otherPump = open_browser(clock, factory)
    transport.clear()
    transport.producer.pauseProducing()  # the transport's buffer is full
    with capturedLogs() as events:
        # Each 99-byte line is a frame of 101 bytes: 99 fit under the cap.
        for _ in range(99):
            writer.dataReceived(b"x" * 99 + b"\n")
        assert not transport.disconnecting
        assert len(transport.value()) == 99 * 101
        writer.dataReceived(b"y" * 99 + b"\n")
        writer.dataReceived(b"z" * 99 + b"\n" + b"ping 1\n")
    assert transport.disconnected
    assert len([e for e in events if "reads too slowly" in e["log_format"]]) == 1
    assert len(transport.value()) == 99 * 101
    otherPump.flush()
    assert len(otherBrowser.app()) == 101
    assert writerTransport.value() == b"pong 1\n"


@pytest.mark.parametrize("origin, allowed", [
    (b"https://app.example.com", True),
    (b"http://localhost:3000", True),
    (b"https://eu.cdn.example.com", True),
    (b"https://evil.example.org", False),
    (b"http://app.example.com", False),
    (b"null", False),
    (None, True),
])
def test_allowed_origins_keep_other_pages_out(clock, origin, allowed):
    """With allowedOrigins only pages from those origins get a WebSocket
    (others are refused at the handshake); programs, which send no Origin,
    still do."""
    hub = HeartbeatServerFactory(clock=clock)
    factory = HeartbeatWebSocketServerFactory(hub, allowedOrigins=[
        "https://app.example.com", "http://localhost:3000", "https://*.cdn.example.com"])
    page, transport = connect(factory)
    header = b"" if origin is None else b"Origin: " + origin + b"\r\n"
    page.dataReceived(HANDSHAKE[:-2] + header + b"\r\n")
    status = transport.value().split(b"\r\n", 1)[0]
    assert status.startswith(b"HTTP/1.1 101 " if allowed else b"HTTP/1.1 400 ")
    assert (hub.connections == {page}) is allowed


def test_by_default_pages_from_anywhere_may_connect(clock):
    """Without allowedOrigins any page connects, one opened from a file too."""
    hub, factory = make_server(clock)
    for origin in [b"https://anywhere.example", b"null"]:
        page, transport = connect(factory)
        page.dataReceived(HANDSHAKE[:-2] + b"Origin: " + origin + b"\r\n\r\n")
        assert transport.value().startswith(b"HTTP/1.1 101")


def test_close_codes_are_the_same_in_heartbeat_js():
    """The page reads the server's close codes by the same numbers."""
    import re
    from pathlib import Path

    import heartbeat
    from heartbeat._framing import websocket as _websocket

    source = (Path(heartbeat.__file__).parent / "web" / "heartbeat.js").read_text()
    codes = dict(re.findall(r"^const ([A-Z_]+) = (\d+);", source, re.M))
    assert codes["HEARTBEAT_TIMEOUT"] == str(_websocket.HEARTBEAT_TIMEOUT)
    assert codes["UNAUTHORIZED"] == str(_websocket.UNAUTHORIZED_CODE)
    assert codes["TOKEN_EXPIRED"] == str(_websocket.TOKEN_EXPIRED_CODE)
    assert codes["TRY_AGAIN_LATER"] == str(_websocket.TRY_AGAIN_LATER)


# The reconnecting Python client


class WebSocketEndpoint(FakeEndpoint):
    """
    An endpoint whose attempts the test completes, each with a fresh server
    connection in memory, or fails.
    """

    def __init__(self, clock, factory):
        super().__init__()
        self.clock = clock
        self.factory = factory

    def accept(self):
        factory, attempt = self.attempts[-1]
        wrapper = factory.buildProtocol(None)
        server = self.factory.buildProtocol(None)
        pump = iosim.connect(
            server, iosim.makeFakeServer(server), wrapper, iosim.makeFakeClient(wrapper),
            clock=self.clock,
        )
        attempt.callback(wrapper)
        return wrapper.wrappedProtocol, server, pump


def make_client(clock, hub_kwargs=None, **attributes):
    hub, serverFactory = make_server(clock, **(hub_kwargs or {}))
    factory = HeartbeatWebSocketClientFactory(
        "ws://127.0.0.1/", clock=clock, random=lambda: 1.0)
    factory.heartbeatInterval = 1.0
    factory.heartbeatTimeout = 3.0
    for name, value in attributes.items():
        setattr(factory, name, value)
    endpoint = WebSocketEndpoint(clock, serverFactory)
    factory.connectEndpoint(endpoint, "memory")
    return hub, factory, endpoint


def next_delay(clock):
    [call] = [c for c in clock.getDelayedCalls() if "_reconnect" in repr(c)]
    return call.getTime() - clock.seconds()


def test_client_flushes_its_buffer_in_order_once_healthy(clock):
    """Messages sent while down arrive in order after the connection opens
    and the server has answered."""
    hub, factory, endpoint = make_client(clock)
    for n in range(3):
        factory.sendMessage(b"m%d" % n)
    got = []
    endpoint.factory.protocol = type("Recorder", (endpoint.factory.protocol,), {
        "messageReceived": lambda self, payload, isBinary: got.append(payload)})
    client, server, pump = endpoint.accept()
    assert got == [b"m0", b"m1", b"m2"]
    factory.sendMessage(b"now")
    pump.flush()
    assert got == [b"m0", b"m1", b"m2", b"now"]
    assert factory.connectedProtocol is client
    assert client.heartbeatRtt is not None
    factory.stopTrying()
    pump.flush()
    assert clock.getDelayedCalls() == []


def test_client_backs_off_and_resets_like_the_line_client(clock):
    """Failed attempts double the wait; a healthy connection resets it."""
    hub, factory, endpoint = make_client(clock)
    delays = []
    for _ in range(3):
        endpoint.refuse()
        delays.append(next_delay(clock))
        clock.advance(delays[-1])
    assert delays == [1, 2, 4]
    client, server, pump = endpoint.accept()
    pump.flush()
    server.transport.loseConnection()
    pump.flush()
    assert next_delay(clock) == 1


def test_client_authenticates_first_and_gives_up_if_refused(clock):
    """The client's auth token opens the connection; a wrong one makes it
    stop for good with ServerRefused, as the line client does."""
    from heartbeat import ServerRefused

    hub, factory, endpoint = make_client(
        clock, hub_kwargs={"authToken": b"s3cret"}, authToken=b"s3cret")
    client, server, pump = endpoint.accept()
    assert hub.connections == {server}
    factory.stopTrying()
    pump.flush()
    hub, factory, endpoint = make_client(
        clock, hub_kwargs={"authToken": b"s3cret"}, authToken=b"wrong")
    stopped = factory.whenStopped()
    client, server, pump = endpoint.accept()
    pump.flush()
    assert stopped.called and stopped.result.check(ServerRefused)
    stopped.addErrback(lambda failure: None)
    assert not factory.continueTrying


def test_client_waits_long_when_the_server_is_full(clock):
    """'server full' in the close frame makes the client wait half to all
    of maxDelay, as the line client does."""
    hub, factory, endpoint = make_client(clock, hub_kwargs={"maxConnections": 0})
    client, server, pump = endpoint.accept()
    pump.flush()
    assert next_delay(clock) == 30.0
    assert factory.continueTrying


def test_client_drops_a_dead_server_and_reconnects(clock):
    """A server gone silent gets a close frame at the timeout, the link is
    closed, and a new attempt follows."""
    hub, factory, endpoint = make_client(clock)
    client, server, pump = endpoint.accept()
    pump.serverIO.write = lambda data: None
    run(clock, pump, 2.75)
    assert not pump.clientIO.disconnecting
    run(clock, pump, 0.5)
    assert client.localCloseCode == 4000
    assert pump.clientIO.disconnected
    clock.advance(next_delay(clock))
    assert len(endpoint.attempts) == 2


def test_client_keeps_messages_sent_while_its_connection_closes(clock):
    """Once the client has declared the server dead and sent its close, a
    message sent is kept for the next connection, and whenConnected waits
    for that one."""
    hub, factory, endpoint = make_client(clock)
    got = []
    endpoint.factory.protocol = type("Recorder", (endpoint.factory.protocol,), {
        "messageReceived": lambda self, payload, isBinary: got.append(payload)})
    client, server, pump = endpoint.accept()
    pump.serverIO.write = lambda data: None
    pump.clientIO.write = lambda data: None
    run(clock, pump, 3.25)
    assert client.localCloseCode == 4000 and not pump.clientIO.disconnected
    assert factory.connectedProtocol is None
    factory.sendMessage(b"kept")
    assert factory.bufferedMessages == 1
    connected = factory.whenConnected()
    assert not connected.called
    run(clock, pump, 1.0)
    assert pump.clientIO.disconnected
    clock.advance(next_delay(clock))
    again, server, pump = endpoint.accept()
    assert got == [b"kept"]
    assert connected.result is again
    factory.stopTrying()
    pump.flush()
    assert clock.getDelayedCalls() == []


def test_client_reads_its_message_limit_at_each_connection(clock):
    """maxLineLength set after the factory was made governs the next
    connection: a longer message from the server closes it with 1009."""
    hub, factory, endpoint = make_client(clock, maxLineLength=300)
    got = []
    factory.protocol = type("Recorder", (factory.protocol,), {
        "messageReceived": lambda self, payload, isBinary: got.append(payload)})
    client, server, pump = endpoint.accept()
    server.sendMessage(b"x" * 300)
    server.sendMessage(b"y" * 301)
    pump.flush()
    assert got == [b"x" * 300]
    assert client.localCloseCode == 1009


def test_stop_trying_says_goodbye(clock):
    """stopTrying sends a normal close frame and fires whenStopped."""
    hub, factory, endpoint = make_client(clock)
    client, server, pump = endpoint.accept()
    pump.flush()
    stopped = factory.whenStopped()
    closes = []
    server.onClose = lambda wasClean, code, reason: closes.append(code)
    factory.stopTrying()
    pump.flush()
    assert closes == [1000]
    assert stopped.called
    assert clock.getDelayedCalls() == []


def test_public_names():
    """What users import from heartbeat.websocket is all there."""
    import heartbeat.websocket

    assert sorted(heartbeat.websocket.__all__) == [
        "BroadcastWebSocketServerProtocol",
        "HeartbeatWebSocketClientFactory",
        "HeartbeatWebSocketClientProtocol",
        "HeartbeatWebSocketServerFactory",
        "HeartbeatWebSocketServerProtocol",
        "WebSocketHeartbeat",
        "parse_app_heartbeat",
    ]
    for name in heartbeat.websocket.__all__:
        assert getattr(heartbeat.websocket, name).__module__.startswith("heartbeat._")


def test_site_serves_the_client_to_any_page(clock):
    """GET /heartbeat.js gives the module, importable from any origin; a
    plain GET / is told where the client is."""
    from twisted.web.test.requesthelper import DummyRequest

    from heartbeat._server.websocket import websocket_site

    hub, factory = make_server(clock)
    site = websocket_site(factory)
    request = DummyRequest([b"heartbeat.js"])
    body = site.getResourceFor(request).render(request)
    assert b"export class HeartbeatSocket" in body
    assert request.responseHeaders.getRawHeaders(b"access-control-allow-origin") == [b"*"]
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(
        b"text/javascript")
    assert site.timeOut == 3.0
    request = DummyRequest([b""])
    body = site.getResourceFor(request).render(request)
    assert request.responseCode == 426 and b"/heartbeat.js" in body
