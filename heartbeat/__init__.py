"""
heartbeat: liveness for long-lived Twisted connections.

Ping a silent peer, drop a dead one, measure the round trip, and reconnect
with jittered backoff.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each public name and the module that defines it, imported on first use:
# a server does not load the client, nor a client the server.
_EXPORTS = {
    "BroadcastServerProtocol": "._server.line",
    "BufferFull": "._client.factory",
    "ClientStopped": "._client.factory",
    "HeartbeatClientFactory": "._client.factory",
    "HeartbeatClientProtocol": "._client.protocol",
    "HeartbeatLineProtocol": "._framing.line",
    "HeartbeatProtocol": "._core.protocol",
    "HeartbeatServerFactory": "._server.factory",
    "HeartbeatServerProtocol": "._server.line",
    "ServerRefused": "._client.factory",
    "backoff_delay": "._core.backoff",
    "parse_heartbeat": "._framing.line",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'heartbeat' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
