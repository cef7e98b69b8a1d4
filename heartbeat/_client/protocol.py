"""
The client's line connection: it proves the server alive, then reports to
its factory.
"""

from __future__ import annotations

from typing import Optional

from twisted.logger import Logger
from twisted.python.failure import Failure

from .._framing.handshake import (
    Handshake,
    HandshakeError,
    format_handshake,
    is_handshake,
    parse_handshake,
)
from .._framing.line import AUTH, ERROR, HeartbeatLineProtocol
from .._framing.resume import SessionLines
from .refresh import TokenRefresh, current_token
from .timing import follow_server


class HeartbeatClientProtocol(SessionLines, HeartbeatLineProtocol):
    """
    A client connection: sends its handshake and pings at once to prove the
    server alive, then reports to its factory.  Subclass and override
    L{messageReceived}.

    A line C{error <reason>} is held back until the next line: if the
    connection ends first it was the server's reason for closing, otherwise
    it was an application line (an echo, say) and is delivered in order.

    The connection takes its timing and line limit from its factory, then
    from the server's answer to its handshake (see
    L{heartbeat._client.timing}).  A server that says when the token
    expires is sent a fresh one in time, when the factory's C{authToken}
    is a callable (see L{heartbeat._client.refresh}).

    @ivar heartbeatServerHandshake: the server's answer to the handshake
        (L{Handshake}), or C{None} from a server that did not answer it.
    """

    log = Logger()
    _healthy = False
    _heldError: Optional[bytes] = None
    _handshakeSent = b""
    _tokenRefresh: Optional[TokenRefresh] = None
    heartbeatServerHandshake: Optional[Handshake] = None

    def connectionMade(self) -> None:
        factory = self.factory
        self.heartbeatInterval = factory.heartbeatInterval
        self.heartbeatTimeout = factory.heartbeatTimeout
        self.heartbeatPongTimeout = factory.heartbeatPongTimeout
        self.maxLineLength = factory.maxLineLength
        super().connectionMade()
        factory.clientConnectionMade(self)
        if factory.authToken is not None:
            token = current_token(factory)
            if token is None:
                # Tried again after the backoff, as a connection that failed.
                self.transport.loseConnection()
                return
            self.sendLine(AUTH + b" " + token)
            self._tokenRefresh = TokenRefresh(factory, self.sendLine)
        self._handshakeSent = format_handshake(factory.handshakeFields())
        self.sendLine(self._handshakeSent)
        self.heartbeatPing()

    def lineReceived(self, line: bytes) -> None:
        if self._heartbeatSession is not None:
            # The server escapes application lines that begin with
            # "error": this one is its reason for closing.
            if line.startswith(ERROR + b" "):
                self.factory.serverClosedWithError(line[len(ERROR) + 1 :].rstrip(b"\r"))
            elif not self._refreshAnswered(line):
                super().lineReceived(line)
            return
        held = self._heldError
        if held is not None:
            self._heldError = None
            self.messageReceived(held)
        if line.startswith(ERROR + b" "):
            self._heldError = line[:-1] if line[-1:] == b"\r" else line
            return
        if not self._healthy:
            # Any line but an error proves the server alive: the answer to
            # our handshake, or from a server that does not answer one,
            # our first ping's pong, usually, or its own ping or message.
            self._healthy = True
            answered = self._readAnswer(line.rstrip(b"\r"))
            self.factory.clientConnectionHealthy(self)
            if answered:
                return
        if not self._refreshAnswered(line):
            super().lineReceived(line)

    def _refreshAnswered(self, line: bytes) -> bool:
        """
        Take C{line} as the answer to a fresh token (the time it has) if it
        is one.  In a session an application line never reads as one: the
        server escapes those that would.
        """
        refresh = self._tokenRefresh
        if refresh is not None and refresh.pending and is_handshake(line):
            self._readAnswer(line.rstrip(b"\r"))
            return True
        return False

    def _readAnswer(self, line: bytes) -> bool:
        """
        Take C{line}, the server's first, as the answer to our handshake if
        it is one.  A server that echoes lines sends our own handshake
        back: that is no answer, and not the application's either.

        @return: whether the line was the handshake's, answer or echo.
        """
        if not is_handshake(line):
            return False
        if line != self._handshakeSent:
            try:
                self.heartbeatServerHandshake = answer = parse_handshake(line)
            except HandshakeError as e:
                self.log.warn("the server's handshake is malformed: {why}", why=e)
            else:
                follow_server(self, answer)
                if self._tokenRefresh is not None:
                    self._tokenRefresh.expiresIn(answer.number("expires"))
        return True

    def sendMessage(self, line: bytes, isBinary: Optional[bool] = None) -> None:
        """
        Send one application line; with a session, through the factory,
        which keeps it until the server acknowledges it.
        """
        if self._heartbeatSession is None:
            super().sendMessage(line, isBinary)
        else:
            self.factory.sendMessage(line)

    def sessionBroken(self, why: str) -> None:
        self.log.warn(
            "the server broke the session's rules ({why}): reconnecting", why=why
        )
        self.stopHeartbeat()
        self.transport.abortConnection()

    def sessionTakenOver(self) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        if self._tokenRefresh is not None:
            self._tokenRefresh.cancel()
            self._tokenRefresh = None
        held = self._heldError
        if held is not None:
            self._heldError = None
            self.factory.serverClosedWithError(held[len(ERROR) + 1 :])
        super().connectionLost(reason)
