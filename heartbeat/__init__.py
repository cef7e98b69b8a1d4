"""
heartbeat: liveness for long-lived Twisted connections.

Ping a silent peer, drop a dead one, measure the round trip, and reconnect
with jittered backoff.
"""

from ._backoff import backoff_delay
from ._client import (
    BufferFull,
    ClientStopped,
    HeartbeatClientFactory,
    HeartbeatClientProtocol,
    ServerRefused,
)
from ._line import HeartbeatLineProtocol, parse_heartbeat
from ._protocol import HeartbeatProtocol
from ._server import (
    BroadcastServerProtocol,
    HeartbeatServerFactory,
    HeartbeatServerProtocol,
)

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
