"""
The timing a client takes from the server: the server announces its
interval, timeout, pong timeout and line limit in its handshake answer, and
each client connection follows them, as MQTT 5 clients follow the server's
keep-alive, so that an operator changes timing in one place.

A setting the application left at its default follows the server; one it
set itself is kept.  The defaults are numbers of their own types, so that
telling them apart needs no bookkeeping: any value the application sets (on
the factory or in a subclass) is a plain number or C{None}.
"""

from __future__ import annotations

from typing import Any, Dict

from twisted.logger import Logger

from .._framing.handshake import Handshake


class _Default(float):
    """
    A client's timing left at its default, which the server's announced
    timing replaces.
    """

    __slots__ = ()


class _DefaultLength(int):
    """
    A client's line limit left at its default.
    """

    __slots__ = ()


DEFAULT_INTERVAL = _Default(25.0)
DEFAULT_TIMEOUT = _Default(90.0)
DEFAULT_PONG_TIMEOUT = _Default(5.0)
DEFAULT_LINE_LENGTH = _DefaultLength(65536)


def follows_server(value: object) -> bool:
    """
    Whether a client setting was left at its default, for the server's
    announcement to replace.
    """
    return isinstance(value, (_Default, _DefaultLength))


def announced_settings(settings: object, answer: Handshake) -> Dict[str, object]:
    """
    What a client connection takes from the server's handshake answer: the
    server's timing and line limit, for each of C{settings}' attributes
    (C{heartbeatInterval}, C{heartbeatTimeout}, C{heartbeatPongTimeout},
    C{maxLineLength}) left at its default.

    A server that never pings (C{interval=0}) is still pinged, within half
    its timeout; one that never drops (C{timeout=0}) is still dropped when
    dead, at the client's default timeout or two intervals; an answer
    without both, or whose timeout is not above its interval, changes
    neither.

    @return: the attributes to set, with their values.
    """
    interval = answer.number("interval")
    timeout = answer.number("timeout")
    if interval is None or timeout is None or interval == timeout == 0:
        interval = timeout = None
    elif interval == 0:
        interval = min(DEFAULT_INTERVAL, timeout / 2)
    elif timeout == 0:
        timeout = max(DEFAULT_TIMEOUT, 2 * interval)
    elif timeout <= interval:
        interval = timeout = None
    pongTimeout = answer.number("pong-timeout")
    limit = answer.number("max-length")
    announced = {
        "heartbeatInterval": interval,
        "heartbeatTimeout": timeout,
        "heartbeatPongTimeout": pongTimeout,
        "maxLineLength": int(limit) if limit and limit.is_integer() else None,
    }
    return {
        name: float(value) if name != "maxLineLength" else value
        for name, value in announced.items()
        if value is not None and follows_server(getattr(settings, name))
    }


_FIELDS = {
    "heartbeatInterval": "interval",
    "heartbeatTimeout": "timeout",
    "heartbeatPongTimeout": "pong-timeout",
    "maxLineLength": "max-length",
}

log = Logger()


def follow_server(protocol: Any, answer: Handshake) -> None:
    """
    Give a client connection the settings it takes from the server's
    answer (L{announced_settings} of its factory), and file it anew on the
    timing wheel when its timing changed.
    """
    changed = {
        name: value
        for name, value in announced_settings(protocol.factory, answer).items()
        if getattr(protocol, name) != value
    }
    if not changed:
        return
    for name, value in changed.items():
        setattr(protocol, name, value)
    if changed.keys() - {"maxLineLength"}:
        protocol.stopHeartbeat()
        protocol.startHeartbeat()
    log.info(
        "following the server's settings: {settings}",
        settings=", ".join(f"{_FIELDS[name]} {value:g}" for name, value in changed.items()),
    )
