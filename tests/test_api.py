"""
The push API end to end: a backend's HTTP calls against the real server,
and what its connections receive.
"""

import json
from io import BytesIO
from urllib.parse import quote

import pytest
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from heartbeat._framing.handshake import parse_handshake
from heartbeat._status.api import ApiResource

from .apiclient import Api, api_options, listening, token_for
from .processes import Peer, Server
from .tokens import SECRET

LIMIT = 4096


@pytest.fixture
def api(tmp_path):
    """
    A server that verifies tokens, with its API: C{(server, api)}.
    """
    key = tmp_path / "jwt.key"
    key.write_bytes(SECRET)
    options, port = api_options(tmp_path)
    server = Server("--jwt-key-file", str(key), "--max-line-length", str(LIMIT),
                    "--interval", "5", "--timeout", "11", *options)
    try:
        listening(port)
        yield server, Api(port)
    finally:
        server.stop()


def peer(server, name):
    """A connection of C{name}, in presence when this returns."""
    connection = Peer(server.port)
    connection.send(b"auth " + token_for(SECRET, name) + b"\nheartbeat/1\n")
    answer = connection.readline()
    assert parse_handshake(answer.rstrip(b"\n")).fields["name"] == name, answer
    return connection


def nothing_more(connection):
    """Whether C{connection} got nothing beyond what it read: its ping's
    pong comes next."""
    connection.send(b"ping check\n")
    return connection.readline() == b"pong check"


def test_a_line_for_a_name_reaches_each_of_its_connections(api):
    """A backend's line for alice reaches both of alice's connections, and
    no one else; the answer says to how many."""
    server, api = api
    phone, laptop, bob = peer(server, "alice"), peer(server, "alice"), peer(server, "bob")
    assert api.send("alice", b"your order shipped") == (200, {"sent": 2})
    assert phone.readline() == laptop.readline() == b"your order shipped"
    assert nothing_more(bob)
    assert api.send("carol", b"anyone?") == (200, {"sent": 0})


def test_broadcast_presence_and_disconnect(api):
    """A broadcast reaches everyone; presence lists the names, verified,
    page by page; a disconnect closes every connection of a name with
    'error disconnected by server', and presence forgets it."""
    server, api = api
    alice = [peer(server, "alice"), peer(server, "alice")]
    bob = peer(server, "bob")
    assert api.call("POST", "/broadcast", b"maintenance at noon") == (
        200, {"broadcast": True})
    for connection in alice + [bob]:
        assert connection.readline() == b"maintenance at noon"
    status, answer = api.call("GET", "/presence/alice")
    assert status == 200 and answer["online"] is True
    assert [c["verified"] for c in answer["connections"]] == [True, True]
    assert api.call("GET", "/presence") == (
        200, {"count": 2, "names": ["alice", "bob"], "next": None})
    assert api.call("GET", "/presence?limit=1") == (
        200, {"count": 2, "names": ["alice"], "next": "alice"})
    assert api.call("GET", "/presence?limit=1&after=alice") == (
        200, {"count": 2, "names": ["bob"], "next": "bob"})
    assert api.call("DELETE", "/connections/alice") == (200, {"disconnected": 2})
    for connection in alice:
        assert connection.readline() == b"error disconnected by server"
        assert connection.closed_within(2)
    assert api.call("GET", "/presence/alice") == (
        200, {"name": "alice", "online": False, "connections": []})
    assert nothing_more(bob)


def test_without_the_right_bearer_token_nothing_happens(api):
    """Without a bearer token, or with another, every call is 401 and does
    nothing: no line sent, no one disconnected, no presence told; the log
    says so once, without the token."""
    server, api = api
    alice = peer(server, "alice")
    for token in (None, "not the token", api.token + "x", ""):
        for method, path, body in [("POST", "/send/alice", b"forged"),
                                   ("POST", "/broadcast", b"forged"),
                                   ("DELETE", "/connections/alice", None),
                                   ("GET", "/presence", None),
                                   ("GET", "/openapi.json", None)]:
            status, answer = api.call(method, path, body, token=token or None)
            assert (status, answer["error"]) == (401, "unauthorized")
    assert nothing_more(alice)
    assert api.call("GET", "/presence/alice")[1]["online"] is True
    # One line for the lot (they are throttled), and no token in it.
    log = server.log()
    assert log.count("refused an API request from 127.0.0.1: ") == 1
    assert "not the token" not in log and api.token not in log


def test_a_line_too_long_or_with_a_newline_reaches_no_one(api):
    """A body over --max-line-length is 413 and one holding a newline 400;
    neither reaches the name or anyone else.  A line of exactly the limit
    goes."""
    server, api = api
    alice = peer(server, "alice")
    for body, status, error in [(b"x" * (LIMIT + 1), 413, "too_long"),
                                (b"y" * 100_000, 413, "too_long"),
                                (b"two\nlines", 400, "newline")]:
        for path in ("/send/alice", "/broadcast"):
            answer = api.call("POST", path, body)
            assert (answer[0], answer[1]["error"]) == (status, error)
    assert nothing_more(alice)
    assert api.send("alice", b"z" * LIMIT) == (200, {"sent": 1})
    assert alice.readline() == b"z" * LIMIT


def test_errors_have_one_shape(api):
    """Every refusal is JSON with an error code and a message: a bad name,
    a bad limit, an unknown path, a method not allowed (with Allow)."""
    server, api = api
    for method, path, status, error in [
        ("GET", "/presence/two%20words", 400, "bad_name"),
        ("POST", "/send/" + "x" * 257, 400, "bad_name"),
        ("POST", "/send/bad%FFutf8", 400, "bad_name"),
        ("POST", "/send/tab%09", 400, "bad_name"),
        ("GET", "/presence?limit=0", 400, "bad_limit"),
        ("GET", "/presence?limit=lots", 400, "bad_limit"),
        ("GET", "/nowhere", 404, "not_found"),
        ("GET", "/send/alice/more", 404, "not_found"),
        ("PUT", "/presence", 405, "method_not_allowed"),
        ("GET", "/send/alice", 405, "method_not_allowed"),
    ]:
        got, answer = api.call(method, path)
        assert (got, answer["error"]) == (status, error), path
        assert sorted(answer) == ["error", "message"]


def test_names_with_any_printable_character_are_reached(api):
    """A name holding '/', '%' or '?' is reached when percent-encoded in
    the path."""
    server, api = api
    odd = peer(server, "a/b%c?d")
    assert api.send("a/b%c?d", b"hi") == (200, {"sent": 1})
    assert odd.readline() == b"hi"


def test_presence_pages_after_a_name_holding_a_percent(api):
    """A page after a name holding '%', percent-encoded in the query once,
    starts after that very name: 'a%41' is not read as 'aA'."""
    server, api = api
    held = [peer(server, "a%41"), peer(server, "a0")]
    assert api.call("GET", "/presence?limit=1&after=a%2541") == (
        200, {"count": 2, "names": ["a0"], "next": "a0"})
    assert all(nothing_more(connection) for connection in held)


def test_names_in_any_script_are_reached(api):
    """A name of UTF-8 text, in any script, is reached through the API as
    through the handshake that named it, and found in presence."""
    server, api = api
    name = "Zoë-東京"
    zoe = peer(server, name)
    assert api.send(name, b"hi") == (200, {"sent": 1})
    assert zoe.readline() == b"hi"
    assert api.call("GET", "/presence/" + quote(name, safe=""))[1]["online"] is True


class Recorder:
    """A server factory's cluster-wide API that records the lines sent."""

    maxLineLength = 100

    def __init__(self):
        self.sent = []

    def sendTo(self, name, line, isBinary=None):
        self.sent.append((name, line, isBinary))
        return succeed(1)


@pytest.mark.parametrize("contentType, isBinary", [
    (b"application/octet-stream", True), (b"Application/Octet-Stream; x=1", True),
    (b"text/plain; charset=utf-8", None), (None, None)])
def test_octet_stream_reaches_pages_as_binary(contentType, isBinary):
    """A body sent as application/octet-stream reaches pages as a binary
    message; any other, as its bytes allow (text when UTF-8)."""
    server = Recorder()
    resource = ApiResource(server, b"t" * 16, Clock())
    request = DummyRequest([b"send", b"peter"])
    request.method = b"POST"
    request.path = b"/send/peter"
    request.content = BytesIO(b"hello")
    request.bodyTooLong = False
    request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer " + b"t" * 16])
    if contentType is not None:
        request.requestHeaders.setRawHeaders(b"content-type", [contentType])
    assert resource.render(request) == NOT_DONE_YET
    assert json.loads(b"".join(request.written)) == {"sent": 1}
    assert server.sent == [("peter", b"hello", isBinary)]
