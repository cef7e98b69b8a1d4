"""
An idle server imports only what its options use.
"""

import json
import subprocess
import sys

import pytest

# What no line server needs unless an option asks for it.
OPTIONAL = [
    "autobahn",
    "prometheus_client",
    "txredisapi",
    "heartbeat._client.factory",
    "heartbeat._cluster.redis",
    "heartbeat._cluster.address",
    "heartbeat._server.websocket",
    "heartbeat._status.service",
    "heartbeat._service.machine",
    "importlib.metadata",
]


def imported_by(*argv):
    """
    The modules of C{OPTIONAL} that a fresh process has imported once the
    server's service is made from C{argv}, as twistd makes it.
    """
    script = (
        "import json, sys\n"
        "from heartbeat._service.tap import Options, makeService\n"
        "options = Options()\n"
        f"options.parseOptions({list(argv)!r})\n"
        "makeService(options)\n"
        f"print(json.dumps([m for m in {OPTIONAL!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def test_a_plain_server_imports_none_of_the_extras():
    """twistd heartbeat with its defaults loads neither the client, nor
    WebSocket, the status page, Redis, the workers' supervisor, nor the
    package metadata reader: an idle server holds less memory."""
    assert imported_by("--port", "tcp:0") == []


@pytest.mark.parametrize(
    "argv, needed",
    [
        (["--status-port", "tcp:0"], ["prometheus_client", "heartbeat._status.service"]),
        (["--websocket-port", "tcp:0"], ["autobahn", "heartbeat._server.websocket"]),
        (["--workers", "2"], ["heartbeat._service.machine"]),
    ],
)
def test_an_option_imports_what_it_uses(argv, needed):
    """The other side: an option that needs a module gets it."""
    assert set(needed) <= set(imported_by("--port", "tcp:0", *argv))
