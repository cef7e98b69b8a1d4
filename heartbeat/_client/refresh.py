"""
Fresh tokens before the old ones expire.

A server that verifies tokens says, in its answer to the handshake, how
long the connection's token has left (C{expires}, in seconds by its own
clock, so that a client's clock never matters), closes the connection
when that time is up, and answers each fresh token (C{auth <token>} on the
open connection) with the time the fresh one has.  A client whose token
comes from a callable (a backend minting tokens, a file that is
rewritten) sends a fresh one once three quarters of that time are gone.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from .._framing.line import AUTH

# A fresh token is sent once this share of the current one's time is gone:
# early enough for a slow backend and a long round trip, late enough to
# ask the backend for few tokens.
REFRESH_AT = 0.75

# A token with less time than this left is not refreshed: the connection
# expires, and the next one starts with a fresh token.  So a callable that
# keeps returning the same token does not make the client send it ever
# more often as its end nears.
MIN_LEFT = 2.0

log = Logger()


def current_token(factory: Any) -> Optional[bytes]:
    """
    The token C{factory} sends now: its C{authToken}, or what that returns
    when it is a callable; C{None} when the callable failed (logged).
    """
    token = factory.authToken
    if callable(token):
        try:
            token = token()
        except Exception as e:
            log.warn("could not get an auth token: {why}", why=str(e) or repr(e))
            return None
    if isinstance(token, str):
        token = token.encode()
    return token  # type: ignore[no-any-return]


class TokenRefresh:
    """
    One connection's next fresh token.

    @ivar pending: a fresh token went out and its answer has not come.
    """

    def __init__(self, factory: Any, send: Callable[[bytes], None]) -> None:
        self._factory = factory
        self._send = send
        self._call: Optional[IDelayedCall] = None
        self.pending = False

    def expiresIn(self, seconds: Optional[float]) -> None:
        """
        The server says the connection's token has C{seconds} left (or
        gave no expiry: C{None}): send a fresh one in time, if the
        factory's token comes from a callable.
        """
        self.pending = False
        self.cancel()
        if seconds is None or seconds < MIN_LEFT or not callable(self._factory.authToken):
            return
        self._call = self._factory.clock.callLater(seconds * REFRESH_AT, self._refresh)

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _refresh(self) -> None:
        self._call = None
        token = current_token(self._factory)
        if token is not None:
            log.info("sending a fresh auth token")
            self.pending = True
            self._send(AUTH + b" " + token)
