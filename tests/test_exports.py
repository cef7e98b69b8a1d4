"""
The public names: everything else is private and may change.
"""

import heartbeat


def test_all_is_pinned():
    """Adding or dropping a public name is a deliberate act."""
    assert sorted(heartbeat.__all__) == [
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


def test_every_public_name_exists():
    """Each name in __all__ imports from the package itself."""
    for name in heartbeat.__all__:
        assert getattr(heartbeat, name).__module__.startswith("heartbeat.")
