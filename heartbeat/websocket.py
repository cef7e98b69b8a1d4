"""
heartbeat over WebSocket, for C{pip install 'heartbeat[websocket]'}.

A line server's connections can be joined by browser pages and by the
reconnecting client here; both need Autobahn, which the core does not.
"""

from ._websocket import (
    BroadcastWebSocketServerProtocol,
    HeartbeatWebSocketClientFactory,
    HeartbeatWebSocketClientProtocol,
    HeartbeatWebSocketServerFactory,
    HeartbeatWebSocketServerProtocol,
    WebSocketHeartbeat,
    parse_app_heartbeat,
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
