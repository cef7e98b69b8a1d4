"""
heartbeat: liveness for long-lived Twisted connections.

Ping a silent peer, drop a dead one, measure the round trip, and reconnect
with jittered backoff.
"""

from ._client.factory import (
    BufferFull,
    ClientStopped,
    HeartbeatClientFactory,
    ServerRefused,
)
from ._client.protocol import HeartbeatClientProtocol
from ._core.backoff import backoff_delay
from ._core.protocol import HeartbeatProtocol
from ._framing.line import HeartbeatLineProtocol, parse_heartbeat
from ._server.factory import HeartbeatServerFactory
from ._server.line import BroadcastServerProtocol, HeartbeatServerProtocol

__version__ = "0.1.0"

__all__ = [
    "BroadcastServerProtocol",
    "BufferFull",
    "ClientStopped",
    "HeartbeatClientFactory",
    "HeartbeatClientProtocol",
    "HeartbeatLineProtocol",
    "HeartbeatProtocol",
    "HeartbeatServerFactory",
    "HeartbeatServerProtocol",
    "ServerRefused",
    "backoff_delay",
    "parse_heartbeat",
]
