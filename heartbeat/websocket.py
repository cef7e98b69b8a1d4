"""
heartbeat over WebSocket, for C{pip install 'heartbeat[websocket]'}.

A line server's connections can be joined by browser pages and by the
reconnecting client here; both need Autobahn, which the core does not.
"""

from ._client.websocket import (
    HeartbeatWebSocketClientFactory,
    HeartbeatWebSocketClientProtocol,
)
from ._framing.websocket import WebSocketHeartbeat, parse_app_heartbeat
from ._server.websocket import (
    BroadcastWebSocketServerProtocol,
    HeartbeatWebSocketServerFactory,
    HeartbeatWebSocketServerProtocol,
)

__all__ = [
    "BroadcastWebSocketServerProtocol",
    "HeartbeatWebSocketClientFactory",
    "HeartbeatWebSocketClientProtocol",
    "HeartbeatWebSocketServerFactory",
    "HeartbeatWebSocketServerProtocol",
    "WebSocketHeartbeat",
    "parse_app_heartbeat",
]
