"""
Admission: one way into the server for every framing (line or WebSocket),
within its cap, authenticated when it asks for a token, and counted.
"""

from __future__ import annotations

import hmac
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from .._cluster.identity import check_name
from .._cluster.interface import CLOSED, TIMEOUT
from .._core.protocol import peer_name
from .._framing.handshake import Handshake, HandshakeError, seconds, timing_fields
from .._framing.line import (
    AUTH,
    BAD_HANDSHAKE,
    SERVER_FULL,
    SESSIONS_UNAVAILABLE,
    TOKEN_EXPIRED,
    UNAUTHORIZED,
)
from .._session.session import Held
from .tcp import enable_tcp_keepalive
from .tokens import TokenRejected, VerifiedToken

_AUTH_PREFIX = AUTH + b" "


class CountedByServer:
    """
    A connection of a L{HeartbeatServerFactory}, whatever its framing (line
    or WebSocket): admitted within the server's cap, authenticated when the
    server asks for a token, and counted for the summary, the status page
    and the metrics.  Mixed in before the framing.

    One admission for every framing, so that both count against
    C{maxConnections} from the start, show on the status page while they
    owe their C{auth}, and neither hear nor send anything before they are
    admitted.  The framing calls L{heartbeatJoin} once the connection can
    carry messages, L{heartbeatAuthenticate} with each message while it is
    not admitted, and L{heartbeatLeave} when it ends; it provides
    L{heartbeatRefuse}, and may override L{heartbeatConnectionAdmitted}.

    The first message after admission may be the client's handshake (see
    L{heartbeat._framing.handshake}); the framing hands it to
    L{heartbeatHandshakeReceived} and sends the answer in its own format
    (L{heartbeatAnswer}).

    When the server verifies tokens (its C{jwtVerifier}), the token of the
    C{auth} message names the connection, and the connection is closed
    with C{token expired} at the token's expiry unless it has sent a fresh
    token meanwhile: the framing hands each later C{auth <token>} message
    to L{heartbeatTokenReceived}.

    An admitted connection enters the cluster's presence once its name is
    known: after its handshake, at its first other message, or when the
    server's C{handshakeWait} is over, whichever comes first; the framing
    calls L{heartbeatEnterPresence} for the first two.  A name is granted
    only before that.  Until then it hears no broadcast: what is broadcast
    meanwhile is held for it, and sent when it enters presence (after the
    answer to its handshake, which must be the first thing a client
    reads), in order, up to its write cap's bytes.

    @ivar heartbeatAdmitted: whether the connection is the server's in
        full: its application messages are served and it hears broadcasts.
        C{False} while it owes its C{auth}, and once refused.
    @ivar heartbeatConnectionId: a number the server gives the connection
        when it joins, never reused by that server.
    @ivar heartbeatName: the name its token gave the connection (see
        L{heartbeatVerified}), or else the one the client gave in its
        handshake, or C{None}.
    @ivar heartbeatPeerPinged: whether the peer has pinged the server: one
        that pings on its own schedule is never silent long enough to be
        pinged, so the server measures no round trip to it.
    @ivar heartbeatSince: the clock's time the connection was admitted.
    @ivar heartbeatPresent: whether the connection is in the cluster's
        presence.
    """

    heartbeatAdmitted: bool
    heartbeatConnectionId: int
    heartbeatName: Optional[str]
    heartbeatPeerPinged: bool
    heartbeatSince: float
    heartbeatPresent: bool
    _heartbeatJoined: bool
    _heartbeatMayNegotiate: bool
    # Set on every new connection (see HeartbeatProtocol).
    _connectionState = {
        "heartbeatAdmitted": False,
        "heartbeatConnectionId": 0,
        "heartbeatName": None,
        "heartbeatPeerPinged": False,
        "heartbeatSince": 0.0,
        "heartbeatPresent": False,
        "_heartbeatJoined": False,
        "_heartbeatMayNegotiate": False,
        # The session this connection carries (see heartbeat._session).
        "_heartbeatSession": None,
    }
    # Set only when the server asks for a token, as the connection is made.
    _heartbeatAuthCall: Optional[IDelayedCall] = None

    @property
    def heartbeatServer(self) -> Any:
        """
        The L{HeartbeatServerFactory} that counts this connection.
        """
        return self.factory  # type: ignore[attr-defined, no-any-return]

    @property
    def heartbeatVerified(self) -> bool:
        """
        Whether the connection's name was proved by a token the server
        verified, rather than merely claimed by the client.  A property,
        not an attribute: a server without tokens pays nothing for it.
        """
        return (
            self.heartbeatServer.jwtVerifier is not None
            and self.heartbeatName is not None
        )

    # Admission

    def heartbeatJoin(self) -> bool:
        """
        Join the server if there is room, else be refused with C{server
        full}.  A connection that joins counts against the cap and shows on
        the status page at once; it is admitted now, or when it has
        authenticated.

        @return: whether it joined.
        """
        server = self.heartbeatServer
        if not server.registerConnection(self):
            # The server logs refusals, a few at a time.
            self.heartbeatRefuse(SERVER_FULL)
            return False
        self._heartbeatJoined = True
        if server.tcpKeepalive:
            enable_tcp_keepalive(
                self.transport,  # type: ignore[attr-defined]
                server.heartbeatInterval,
                server.heartbeatTimeout,
            )
        self._heartbeatLog.info(  # type: ignore[attr-defined]
            "{peer} connected ({framing})",
            peer=peer_name(self),
            framing=self.heartbeatFraming,  # type: ignore[attr-defined]
        )
        if server.authToken is None and server.jwtVerifier is None:
            self._heartbeatAdmit()
        else:
            self._heartbeatAuthCall = server.clock.callLater(
                server.authTimeout, self._heartbeatAuthExpired
            )
        return True

    def heartbeatAuthenticate(self, message: bytes) -> None:
        """
        The connection's first message, while it is not admitted: C{auth
        <token>} with the server's token admits it; anything else, or a
        wrong token (compared in constant time), refuses it.  On a server
        that verifies tokens, a good token admits it under the token's
        name.
        """
        self._heartbeatCancelAuth()
        server = self.heartbeatServer
        if not message.startswith(_AUTH_PREFIX):
            self._heartbeatUnauthorized("{peer} did not authenticate")
        elif server.jwtVerifier is not None:
            token = self._heartbeatVerify(message)
            if token is not None:
                self.heartbeatName = token.name
                server.tokenExpiries.expireAt(self, token.expires)
                self._heartbeatAdmit()
        elif hmac.compare_digest(message[len(_AUTH_PREFIX) :], server.authToken):
            self._heartbeatAdmit()
        else:
            self._heartbeatUnauthorized("{peer} did not authenticate")

    def heartbeatTokenReceived(self, message: bytes) -> None:
        """
        An admitted connection sent C{auth <token>} again, to a server that
        verifies tokens: a good token for the same name puts the
        connection's expiry off to its own, and the server answers with
        the time it now has left (C{expires}, C{0} for never); any other
        token refuses it.
        """
        token = self._heartbeatVerify(message)
        if token is None:
            return
        if token.name != self.heartbeatName:
            self._heartbeatUnauthorized(
                "{peer} refused: a fresh token for {other!r}, not {name!r}",
                other=token.name,
                name=self.heartbeatName,
            )
            return
        self.heartbeatServer.tokenExpiries.expireAt(self, token.expires)
        expires = self._heartbeatExpiresIn()
        # 0, as for the answer's timing: never.
        self.heartbeatAnswer({"expires": 0 if expires is None else expires})

    def heartbeatTokenExpired(self) -> None:
        """
        The connection's token expired before it sent a fresh one.
        """
        self._heartbeatLog.info(  # type: ignore[attr-defined]
            "closing {peer}: its token expired", peer=peer_name(self)
        )
        self.heartbeatRefuse(TOKEN_EXPIRED)

    def heartbeatAnswer(self, fields: Dict[str, Union[str, int, float, None]]) -> None:
        """
        Send handshake fields to the client, in the framing's way: the
        answer to its handshake, or to a fresh token.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement heartbeatAnswer"
        )

    def heartbeatConnectionAdmitted(self) -> None:
        """
        The connection is now admitted; override to greet it.
        """

    def heartbeatNegotiate(
        self, parse: Callable[[Any], Handshake], message: Any
    ) -> None:
        """
        Read the client's handshake from C{message} with C{parse}, in the
        framing's form, take it and answer it (L{heartbeatAnswer}); the
        connection then enters presence.  A malformed handshake refuses the
        connection.
        """
        try:
            handshake = parse(message)
        except HandshakeError as e:
            self._heartbeatLog.info(  # type: ignore[attr-defined]
                "closing {peer}: bad handshake ({why})", peer=peer_name(self), why=e
            )
            self.heartbeatRefuse(BAD_HANDSHAKE)
            return
        self._heartbeatTake(handshake)

    def heartbeatHandshakeReceived(
        self, handshake: Handshake
    ) -> Dict[str, Union[str, int, float, None]]:
        """
        The client's handshake arrived: take what it asks for and say what
        was granted.  Override (calling up) to grant more capabilities.

        @return: the answer's fields, in order: the connection's id, the
            server's timing and line limit, and the name when one was
            granted: one asked for before the connection entered presence,
            that the rule for names allows (see
            L{heartbeat._cluster.identity.check_name}).
        """
        server = self.heartbeatServer
        fields: Dict[str, Union[str, int, float, None]] = {
            "id": self.heartbeatConnectionId
        }
        fields.update(
            timing_fields(
                server.heartbeatInterval,
                server.heartbeatTimeout,
                server.heartbeatPongTimeout,
                server.maxLineLength,
            )
        )
        name = handshake.get("name")
        if self.heartbeatVerified:
            # The token's name, whatever the client asks for.
            fields["name"] = self.heartbeatName
            expires = self._heartbeatExpiresIn()
            if expires is not None:
                fields["expires"] = expires
            if name is not None and name != self.heartbeatName:
                self._heartbeatLog.info(  # type: ignore[attr-defined]
                    "{peer}: name {name!r} not granted (its token names it {verified!r})",
                    peer=peer_name(self),
                    name=name,
                    verified=self.heartbeatName,
                )
        elif name is not None:
            try:
                if self.heartbeatPresent:
                    raise ValueError("asked for too late")
                self.heartbeatName = fields["name"] = check_name(name)
            except ValueError as e:
                self._heartbeatLog.info(  # type: ignore[attr-defined]
                    "{peer}: name {name!r} not granted ({why})",
                    peer=peer_name(self),
                    name=name,
                    why=e,
                )
        return fields

    def _heartbeatTake(self, handshake: Handshake) -> None:
        """
        Answer the client's handshake: the fields of
        L{heartbeatHandshakeReceived}, and the session's when it asks for
        one, written by the framing's L{heartbeatAnswer} at once, or once
        the store has found the session (in Redis, say); the connection
        then enters presence.  Until then what the client sends is held,
        and read after the answer.

        A session is granted only to a connection not yet in presence: one
        whose handshake came after the server's C{handshakeWait} is in
        presence as itself, and has heard broadcasts its session would
        have kept too.
        """
        fields = self.heartbeatHandshakeReceived(handshake)
        server = self.heartbeatServer
        sessions = server.sessions
        if sessions is None or "resume" not in handshake:
            self._heartbeatAnswered(fields)
            return
        if self.heartbeatPresent:
            self._heartbeatLog.info(  # type: ignore[attr-defined]
                "{peer}: no session: its handshake came after it entered presence",
                peer=peer_name(self),
            )
            self._heartbeatAnswered(fields)
            return
        # It waits no more: what was broadcast while it waited goes through
        # its session if the session starts here, and not at all if the
        # session was resumed (the session heard it, and kept it).
        broadcasts = server.handshakeSettled(self)
        found = sessions.negotiate(self, handshake)
        if not isinstance(found, Deferred):
            fields.update(found)
            self._heartbeatAnswered(fields, broadcasts)
            return
        held = self._heartbeatSession = Held()

        def answer(sessionFields: Dict[str, Any]) -> None:
            if not self.heartbeatAdmitted:
                # Gone meanwhile: its session waits for the next connection,
                # with what the application sent it.
                sessions.abandon(self)
                for payload, isBinary in held.output:
                    self._heartbeatSession.send(payload, isBinary)
                return
            fields.update(sessionFields)
            self._heartbeatAnswered(fields, broadcasts)
            session = self._heartbeatSession
            for payload, isBinary in held.output:
                session.send(payload, isBinary)
            self.heartbeatReadHeld(held.input)

        def unavailable(failure: Failure) -> None:
            self._heartbeatLog.warn(  # type: ignore[attr-defined]
                "{peer}: its session cannot be resumed now ({why}): closing, "
                "for it to try again",
                peer=peer_name(self),
                why=failure.getErrorMessage(),
            )
            self._heartbeatSession = None
            if self.heartbeatAdmitted:
                self.heartbeatRefuse(SESSIONS_UNAVAILABLE)

        found.addCallbacks(answer, unavailable)

    def _heartbeatAnswered(
        self,
        fields: Dict[str, Any],
        broadcasts: Sequence[Tuple[bytes, Optional[bool]]] = (),
    ) -> None:
        self.heartbeatAnswer(fields)
        session = self._heartbeatSession
        if session is not None:
            # The session carries this connection's lines from now on, and
            # what its client has not received goes again, after the answer.
            if self.heartbeatServer.sessions.open(self):
                for line, isBinary in broadcasts:
                    session.send(line, isBinary)
        self.heartbeatEnterPresence()
        self.heartbeatHandshakeAnswered()

    def heartbeatReadHeld(self, held: List[Any]) -> None:
        """
        Read what the client sent while its answer was being found, in the
        framing's way.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement heartbeatReadHeld"
        )

    def heartbeatHandshakeAnswered(self) -> None:
        """
        The handshake is answered, and its session (if any) carries this
        connection; override to act on it.
        """

    @property
    def heartbeatSession(self) -> Any:
        """
        The session this connection carries (a
        L{heartbeat._session.member.ServerSession}: what the application
        sends through it waits there while the client reconnects), or
        C{None}.
        """
        return self._heartbeatSession

    @property
    def heartbeatMember(self) -> Any:
        """
        What the cluster knows this connection's client by: its session,
        if it has one (which outlives the connection), else the connection.
        """
        session = self._heartbeatSession
        return self if session is None else session

    def heartbeatEnterPresence(self) -> None:
        """
        The connection's name is settled: it enters the cluster's presence,
        if it is still admitted and not there yet.
        """
        if self.heartbeatAdmitted and not self.heartbeatPresent:
            self.heartbeatPresent = True
            server = self.heartbeatServer
            for line, isBinary in server.handshakeSettled(self):
                self.sendMessage(line, isBinary)
            if self._heartbeatSession is None:
                # A session is present from its start to its end, whatever
                # its connections do.
                server.cluster.join(self)

    def heartbeatHear(self, line: bytes, isBinary: Optional[bool]) -> None:
        """
        A broadcast for this connection: sent now if its presence is
        settled, else held until it is.  A connection for which more than
        its write cap would be held is dropped, as one that does not read.
        """
        if self.heartbeatPresent:
            self.sendMessage(line, isBinary)  # type: ignore[attr-defined]
        elif not self.heartbeatServer.holdBroadcast(self, line, isBinary):
            self._heartbeatLog.info(  # type: ignore[attr-defined]
                "dropping {peer}: over {limit} bytes of broadcasts wait for its "
                "handshake",
                peer=peer_name(self),
                limit=self.maxWriteBuffer,  # type: ignore[attr-defined]
            )
            self.heartbeatEndPresence()
            self.stopHeartbeat()  # type: ignore[attr-defined]
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def heartbeatDisconnect(self) -> None:
        """
        Close the connection telling the peer that the server disconnected
        it (the cluster's C{disconnect(name)}), in the framing's way.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement heartbeatDisconnect"
        )

    def heartbeatEndPresence(self, reason: str = CLOSED) -> None:
        """
        The connection is on its way out (an error, a timeout, its end): it
        leaves presence now, for C{reason}, and hears nothing more.
        """
        server = self.heartbeatServer
        expiries = server.tokenExpiries
        if expiries is not None:
            expiries.forget(self)
        if self.heartbeatPresent:
            self.heartbeatPresent = False
            session = self._heartbeatSession
            if session is None:
                server.cluster.leave(self, reason)
            else:
                # Its client may come back: the session waits for it.
                server.sessions.detach(session, self)
        elif self.heartbeatAdmitted:
            server.handshakeSettled(self)
        self.heartbeatAdmitted = False

    def heartbeatRefuse(self, reason: bytes) -> None:
        """
        Close the connection telling the peer why (C{server full},
        C{unauthorized}), in the framing's way; the caller has logged it.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement heartbeatRefuse"
        )

    def heartbeatLeave(self, why: str) -> None:
        """
        The connection has ended: it leaves the server, if it had joined.

        @param why: how it ended, for the log.
        """
        self._heartbeatCancelAuth()
        self.heartbeatEndPresence()
        if self._heartbeatJoined:
            self._heartbeatJoined = False
            self.heartbeatServer.unregisterConnection(self)
            self._heartbeatLog.info(  # type: ignore[attr-defined]
                "{peer} disconnected: {reason}", peer=peer_name(self), reason=why
            )

    def _heartbeatAdmit(self) -> None:
        server = self.heartbeatServer
        self.heartbeatAdmitted = True
        self._heartbeatMayNegotiate = True
        self.heartbeatSince = server.clock.seconds()
        server.awaitHandshake(self)
        self.heartbeatConnectionAdmitted()

    def _heartbeatFirstMessage(self) -> bool:
        """
        Whether the message at hand is the first since admission, the only
        one that may be a handshake; asking answers it for the next.
        """
        first = self._heartbeatMayNegotiate
        if first:
            self._heartbeatMayNegotiate = False
        return first

    def _heartbeatAuthExpired(self) -> None:
        self._heartbeatAuthCall = None
        self._heartbeatUnauthorized("{peer} did not authenticate within {timeout}s")

    def _heartbeatVerify(self, message: bytes) -> Optional[VerifiedToken]:
        """
        The token of C{auth <token>} if it is good; else the connection is
        refused, with a log line naming the check it failed (never the
        token itself).
        """
        server = self.heartbeatServer
        try:
            return server.jwtVerifier.verify(  # type: ignore[no-any-return]
                message[len(_AUTH_PREFIX) :], server.clock.seconds()
            )
        except TokenRejected as e:
            self._heartbeatUnauthorized("{peer} refused: {check}", check=str(e))
            return None

    def _heartbeatExpiresIn(self) -> Optional[Union[int, float]]:
        """
        Seconds before the connection's token expires, as an answer carries
        them (to the millisecond), or C{None}: never.
        """
        left = self.heartbeatServer.tokenExpiries.secondsLeft(self)
        return None if left is None else seconds(round(left, 3))

    def _heartbeatUnauthorized(self, message: str, **fields: object) -> None:
        self._heartbeatLog.warn(  # type: ignore[attr-defined]
            message,
            peer=peer_name(self),
            timeout=self.heartbeatServer.authTimeout,
            **fields,
        )
        self.heartbeatRefuse(UNAUTHORIZED)

    def _heartbeatCancelAuth(self) -> None:
        call = self._heartbeatAuthCall
        if call is not None:
            self._heartbeatAuthCall = None
            if call.active():
                call.cancel()

    # Counting

    def heartbeatPing(self) -> bytes:
        self.heartbeatServer.pingsSent += 1
        return super().heartbeatPing()  # type: ignore[misc, no-any-return]

    def heartbeatPingReceived(self, token: Optional[bytes]) -> None:
        self.heartbeatServer.pingsReceived += 1
        self.heartbeatPeerPinged = True
        super().heartbeatPingReceived(token)  # type: ignore[misc]

    def heartbeatRoundTrip(self, rtt: float) -> None:
        self.heartbeatServer.roundTripMeasured(self, rtt)
        super().heartbeatRoundTrip(rtt)  # type: ignore[misc]

    def heartbeatTimedOut(self, silence: float) -> None:
        self.heartbeatServer.timeouts += 1
        self.heartbeatEndPresence(TIMEOUT)
        super().heartbeatTimedOut(silence)  # type: ignore[misc]
