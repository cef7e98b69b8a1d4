"""
Verified names on the server: a JWT from the application's backend, checked
with PyJWT, names the connection (its sub), over lines and WebSocket alike;
a bad token is refused with one log line naming the check; the token's exp
closes the connection unless a fresh token came first.
"""

import json

import jwt
import pytest
from twisted.logger import formatEvent, globalLogPublisher

from heartbeat import HeartbeatServerFactory
from heartbeat._framing.handshake import SUBPROTOCOL
from heartbeat._server.tokens import verifier_from_file
from heartbeat._status.monitor import MonitoredServerFactory
from heartbeat._status.presence import PresenceResource
from heartbeat._status.report import node_report

from .helpers import connect, lose, take
from .test_handshake import hellos
from .test_websocket import Browser, goodbye, make_server, open_browser, run
from .tokens import (
    SECRET,
    ec_key,
    ed_key,
    mint,
    private_pem,
    public_pem,
    rsa_key,
    verifier,
)

SLOT = 0.005


@pytest.fixture
def clock(epoch_clock):
    return epoch_clock


@pytest.fixture
def logged():
    """The log lines written during the test, as an operator reads them."""
    lines = []

    def observer(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def server(clock, factory=HeartbeatServerFactory, **kwargs):
    kwargs.setdefault("jwtVerifier", verifier())
    return factory(clock=clock, heartbeatInterval=25, heartbeatTimeout=90, **kwargs)


def admitted(factory, token, hello=b"heartbeat/1\n"):
    """A line connection that sent C{auth <token>} and C{hello}."""
    protocol, transport = connect(factory)
    protocol.dataReceived(b"auth " + token + b"\n" + hello)
    return protocol, transport


def test_a_good_token_names_the_connection(clock):
    """The token's sub is the connection's name: in the handshake's answer,
    with the seconds the token has left, and in presence, verified."""
    factory = server(clock)
    protocol, transport = admitted(factory, mint(clock, "alice", 60))
    assert take(transport) == (
        b"heartbeat/1 id=1 interval=25 timeout=90 pong-timeout=5 "
        b"max-length=65536 name=alice expires=60\n"
    )
    assert protocol.heartbeatName == "alice" and protocol.heartbeatVerified
    [connection] = factory.connectionsOf("alice").result
    assert connection.verified
    lose(protocol)
    assert factory.connectionsOf("alice").result == []
    assert clock.getDelayedCalls() == []


def test_the_handshake_cannot_take_another_name(clock, logged):
    """A client whose token says alice and whose handshake asks for bob is
    alice: bob is not granted, and the log says why."""
    factory = server(clock)
    protocol, transport = admitted(
        factory, mint(clock, "alice"), b"heartbeat/1 name=bob\n")
    assert b" name=alice " in take(transport)
    assert factory.isOnline("bob").result is False
    assert factory.isOnline("alice").result is True
    assert any("name 'bob' not granted (its token names it 'alice')" in line
               for line in logged)
    lose(protocol)


def test_a_claimed_name_is_unverified(clock):
    """On a server without tokens a name the client gives itself is present,
    and marked unverified: in presence, on the status page and in
    /presence.json; one a token gave is marked verified."""
    factory = MonitoredServerFactory(clock=clock)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"heartbeat/1 name=alice\n")
    [connection] = factory.connectionsOf("alice").result
    assert not connection.verified and not protocol.heartbeatVerified
    [row] = node_report(factory)["connections"]
    assert (row["name"], row["verified"]) == ("alice", False)
    verified = server(clock, MonitoredServerFactory)
    other, _ = admitted(verified, mint(clock, "bob"))
    [row] = node_report(verified)["connections"]
    assert (row["name"], row["verified"]) == ("bob", True)
    assert verified.cluster.describe(other)["verified"] is True
    page = PresenceResource(verified.cluster)._page(None, 10).result
    assert page["names"][0]["connections"][0]["verified"] is True
    assert PresenceResource(factory.cluster)._one("alice").result["connections"][0][
        "verified"] is False
    lose(protocol)
    lose(other)


def bad_tokens(clock):
    """Each way a token can be bad, with the check the log must name; all
    but one from the issuer the server takes, "backend"."""
    rsa = rsa_key()

    def token(**kwargs):
        return mint(clock, **{"iss": "backend", **kwargs})

    return [
        (token(key=b"another secret, just as long as ours"), "bad signature"),
        (token(lifetime=-1), "expired"),
        (token(nbf=clock.seconds() + 10), "not yet valid"),
        (token(aud="another-service"), "wrong audience"),
        (token(iss="someone-else"), "wrong issuer"),
        (token(key=b"x" * 64, algorithm="HS512"), "algorithm not allowed"),
        (token(key=rsa, algorithm="RS256"), "algorithm not allowed"),
        (jwt.encode({"sub": "alice", "iss": "backend"}, None, algorithm="none").encode(),
         "algorithm not allowed"),
        (b"garbage", "malformed token"),
        (b"", "malformed token"),
        (token(sub=None), "no sub claim"),
        (token(sub="mallory#a1b2c3.4"), "sub is not a name"),
        (token(sub="two words"), "sub is not a name"),
        (token(exp="tomorrow"), "exp is not a number"),
    ]


def test_every_bad_token_is_refused_with_its_reason_logged(clock, logged):
    """Each bad token gets 'error unauthorized' and a close, and one log line
    naming the failed check, never the token; nothing is admitted."""
    factory = server(clock, jwtVerifier=verifier(issuer="backend"))
    for token, check in bad_tokens(clock):
        del logged[:]
        protocol, transport = connect(factory)
        protocol.dataReceived(b"auth " + token + b"\n")
        assert take(transport) == b"error unauthorized\n", check
        assert transport.disconnecting
        refusals = [line for line in logged if "refused" in line]
        assert len(refusals) == 1 and check in refusals[0], (check, logged)
        for part in token.split(b"."):
            if len(part) > 8:
                assert part.decode() not in "\n".join(logged)
        assert factory.connectionsOf("alice").result == []
        lose(protocol)
    good, _ = admitted(factory, mint(clock, iss="backend"))
    assert good.heartbeatAdmitted
    lose(good)
    assert clock.getDelayedCalls() == []


def test_the_audience_and_issuer_checks(clock):
    """With an audience and an issuer set, a token must carry both; without
    an audience, a token that names one is refused (it is for another)."""
    factory = server(clock, jwtVerifier=verifier(audience="chat", issuer="backend"))
    for claims, admitted_ in [
        ({"aud": "chat", "iss": "backend"}, True),
        ({"aud": ["chat", "mail"], "iss": "backend"}, True),
        ({"iss": "backend"}, False),
        ({"aud": "chat"}, False),
        ({"aud": "mail", "iss": "backend"}, False),
    ]:
        protocol, transport = connect(factory)
        protocol.dataReceived(b"auth " + mint(clock, **claims) + b"\n")
        assert protocol.heartbeatAdmitted is admitted_, claims
        lose(protocol)
    open_ = server(clock)
    protocol, transport = connect(open_)
    protocol.dataReceived(b"auth " + mint(clock, aud="chat") + b"\n")
    assert take(transport) == b"error unauthorized\n"
    lose(protocol)


@pytest.mark.parametrize("make_key, algorithm", [
    (rsa_key, "RS256"), (ec_key, "ES256"), (ed_key, "EdDSA")])
def test_public_keys_verify_their_own_kind_only(clock, tmp_path, make_key, algorithm):
    """A server given a public key in PEM takes tokens signed with its
    private key by the key's algorithm, by default; an HMAC token signed
    with the public key itself (algorithm confusion) is refused."""
    private = make_key()
    path = tmp_path / "key.pem"
    path.write_bytes(public_pem(private))
    verifier_ = verifier_from_file(str(path))
    assert verifier_.algorithms == [algorithm]
    factory = server(clock, jwtVerifier=verifier_)
    good, _ = admitted(factory, mint(clock, "carol", key=private, algorithm=algorithm))
    assert good.heartbeatName == "carol"
    forged = jwt.api_jws.PyJWS()
    forged._algorithms["HS256"].prepare_key = lambda key: key  # an attacker's PyJWT
    token = forged.encode(
        json.dumps({"sub": "mallory", "exp": clock.seconds() + 60}).encode(),
        public_pem(private), algorithm="HS256").encode()
    bad, transport = connect(factory)
    bad.dataReceived(b"auth " + token + b"\n")
    assert take(transport) == b"error unauthorized\n"
    lose(good)
    lose(bad)


def test_key_files_are_checked_up_front(tmp_path):
    """A key file that cannot serve (a private key, a short secret, an
    algorithm the key cannot verify) is refused with a reason; a secret's
    default is HS256 and it may take HS384 and HS512 when long enough."""
    def key_file(data):
        path = tmp_path / "key"
        path.write_bytes(data)
        return str(path)

    assert verifier_from_file(key_file(SECRET + b"\n")).algorithms == ["HS256"]
    assert verifier_from_file(key_file(b"x" * 64), ["HS384", "HS512"]).algorithms == [
        "HS384", "HS512"]
    rsa = rsa_key()
    assert verifier_from_file(key_file(public_pem(rsa)), ["PS256"]).algorithms == ["PS256"]
    for data, algorithms, says in [
        (private_pem(rsa), None, "private key"),
        (b"short", None, "too short for HS256"),
        (b"x" * 40, ["HS512"], "too short for HS512"),
        (public_pem(rsa), ["HS256"], "must never serve as an HMAC secret"),
        (public_pem(ec_key()), ["RS256"], "not RS256"),
        (b"x" * 40, ["none"], "not none"),
        (b"-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n", None,
         "not a PEM public key"),
        (b"  \n", None, "empty"),
    ]:
        with pytest.raises(ValueError, match=says):
            verifier_from_file(key_file(data), algorithms)
    with pytest.raises(ValueError, match="cannot be read"):
        verifier_from_file(str(tmp_path / "missing"))


def test_the_token_expires_at_exp_unless_refreshed(clock):
    """At exp the connection gets 'error token expired' and is closed, not
    a slot before; a fresh token for the same name moves the end to its own
    exp, and is answered with its seconds."""
    factory = server(clock)
    protocol, transport = admitted(factory, mint(clock, lifetime=10))
    take(transport)
    clock.advance(6)
    protocol.dataReceived(b"auth " + mint(clock, lifetime=10) + b"\r\n")
    assert take(transport) == b"heartbeat/1 expires=10\n"
    clock.advance(10 - SLOT)
    assert take(transport) == b"" and protocol.heartbeatAdmitted
    clock.advance(2 * SLOT)
    assert take(transport) == b"error token expired\n"
    assert transport.disconnecting
    assert factory.isOnline("alice").result is False
    lose(protocol)
    assert clock.getDelayedCalls() == []


def test_a_token_without_exp_never_expires(clock):
    """A token without exp keeps its connection for as long as it lives; a
    fresh one without exp takes an expiry away."""
    factory = server(clock)
    protocol, transport = admitted(factory, mint(clock, lifetime=None))
    assert b"expires" not in take(transport)
    assert len(factory.tokenExpiries) == 0
    other, transport = admitted(factory, mint(clock, "bob", lifetime=5))
    other.dataReceived(b"auth " + mint(clock, "bob", lifetime=None) + b"\n")
    assert take(transport).endswith(b"\nheartbeat/1 expires=0\n")
    clock.advance(20)
    assert protocol.heartbeatAdmitted and other.heartbeatAdmitted
    lose(protocol)
    lose(other)


def test_a_bad_fresh_token_closes_the_connection(clock, logged):
    """A fresh token that is bad, or names someone else, gets 'error
    unauthorized'; on a server without tokens 'auth ...' later on is an
    application line like any other."""
    factory = server(clock)
    for token, says in [(mint(clock, "bob"), "a fresh token for 'bob', not 'alice'"),
                        (mint(clock, lifetime=-5), "expired")]:
        protocol, transport = admitted(factory, mint(clock))
        take(transport)
        protocol.dataReceived(b"auth " + token + b"\n")
        assert take(transport) == b"error unauthorized\n"
        assert any(says in line for line in logged)
        lose(protocol)
    plain = HeartbeatServerFactory(clock=clock)
    protocol, transport = connect(plain)
    protocol.dataReceived(b"auth whatever\n")
    assert take(transport) == b"auth whatever\n"
    lose(protocol)


def test_expiries_share_one_timer(clock):
    """A thousand connections whose tokens expire at a thousand instants
    keep one timer for all of them (and one for their heartbeats), and each
    is closed at its own exp."""
    factory = server(clock)
    connections = []
    for n in range(1000):
        connections.append(admitted(factory, mint(clock, f"u{n}", lifetime=10 + n / 100)))
    assert len(clock.getDelayedCalls()) <= 3  # expiries, heartbeats, handshake wait
    clock.advance(10 + 4.99)
    clock.advance(SLOT)
    closed = [n for n, (p, t) in enumerate(connections) if t.disconnecting]
    assert closed == list(range(500))
    for protocol, _ in connections:
        lose(protocol)
    assert clock.getDelayedCalls() == []


def test_a_server_without_tokens_pays_nothing_for_them(clock):
    """A connection holds the same attributes on a server that verifies
    tokens as on one that takes a shared token (its expiry lives in the
    server's wheel), and sets none later; a server without tokens has no
    wheel."""
    assert HeartbeatServerFactory(clock=clock).tokenExpiries is None
    shared = HeartbeatServerFactory(clock=clock, authToken=b"s3cret")
    a, _ = connect(shared)
    a.dataReceived(b"auth s3cret\nheartbeat/1 name=a\n")
    factory = server(clock)
    b, _ = connect(factory)
    initial = set(vars(b))
    b.dataReceived(b"auth " + mint(clock, "b") + b"\nheartbeat/1\n")
    b.dataReceived(b"auth " + mint(clock, "b") + b"\n")
    assert set(vars(a)) == set(vars(b)) == initial
    clock.advance(60 + SLOT)
    clock.advance(SLOT)
    assert set(vars(b)) == initial
    lose(a)
    lose(b)


# Over WebSocket


def test_a_page_is_named_by_its_token_and_closed_with_4003_at_exp(clock):
    """A page's first message 'auth <jwt>' admits it under the token's name;
    its hello's answer carries the name and the seconds left; a fresh token
    is answered with a hello of its own; at exp the page gets close code
    4003, 'token expired'."""
    hub, factory = make_server(clock, jwtVerifier=verifier())

    class Page(Browser):
        def onOpen(self):
            self.sendMessage(b"auth " + mint(clock, "dora", lifetime=5))
            self.sendMessage(json.dumps({"type": "hello", "name": "eve"}).encode())

    server_, browser, pump = open_browser(clock, factory, Page, [SUBPROTOCOL])
    pump.flush()
    [answer] = hellos(browser)
    assert (answer["name"], answer["expires"]) == ("dora", 5)
    assert hub.connectionsOf("dora").result[0].verified
    run(clock, pump, 3)
    browser.sendMessage(b"auth " + mint(clock, "dora", lifetime=4))
    pump.flush()
    assert hellos(browser)[-1] == {"type": "hello", "expires": 4}
    run(clock, pump, 3.75)
    assert browser.closed is None
    run(clock, pump, 0.5)
    assert browser.closed == (4003, "token expired")
    assert hub.isOnline("dora").result is False
    run(clock, pump, 2)
    assert clock.getDelayedCalls() == []


def test_a_page_with_a_bad_token_is_refused_with_4001(clock, logged):
    """Each bad token closes a page with 4001, 'unauthorized', with one log
    line naming the check and not the token; a good one is admitted."""
    hub, factory = make_server(clock, jwtVerifier=verifier(issuer="backend"))
    for token, check in bad_tokens(clock):
        del logged[:]
        server_, browser, pump = open_browser(clock, factory)
        browser.sendMessage(b"auth " + token)
        pump.flush()
        assert browser.closed == (4001, "unauthorized"), check
        refusals = [line for line in logged if "refused" in line]
        assert len(refusals) == 1 and check in refusals[0], (check, logged)
        for part in token.split(b"."):
            if len(part) > 8:
                assert part.decode() not in "\n".join(logged)
        assert hub.connections == set()
        goodbye(pump)
    server_, browser, pump = open_browser(clock, factory)
    browser.sendMessage(b"auth " + mint(clock, "ann", iss="backend"))
    pump.flush()
    assert browser.closed is None and hub.connections == {server_}
    assert server_.heartbeatAdmitted and server_.heartbeatName == "ann"
    goodbye(pump)
