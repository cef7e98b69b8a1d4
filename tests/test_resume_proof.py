"""
The proof: 10,000 numbered lines each way, over real sockets, through a
path cut at 20 random points (a reset, a silent blackhole, a blackhole
then a reset), the client reconnecting each time: each side's application
receives exactly 1..10,000, in order, once.  For the line protocol, with
heartbeat-client (stdin to the server, the server's lines to stdout), and
for WebSocket, with the library's WebSocket client.
"""

import os
import subprocess
import sys
import time

from .processes import ENV, ROOT, FaultProxy
from .resumeproof import (
    COUNT,
    CUTS,
    RATE,
    SessionApp,
    count_in,
    cut_at_random,
    feed,
    first_difference,
    lines_of,
    numbered,
    quick_client,
    wait_until_complete,
)


def seed():
    """A seed for the cuts, printed so that a failure can be replayed."""
    value = int(os.environ.get("HEARTBEAT_PROOF_SEED", time.time_ns() % 1_000_000))
    print(f"cut seed {value} (HEARTBEAT_PROOF_SEED)")
    return value


def check(app, received, figure, name, made, elapsed):
    """Each side's application got 1..COUNT, in order, once."""
    got = lines_of(app.record)
    assert got == numbered(b"c"), "server: " + first_difference(got, numbered(b"c"))
    got = lines_of(received)
    assert got == numbered(b"s"), "client: " + first_difference(got, numbered(b"s"))
    log = app.log()
    assert "cannot resume" not in log and "Traceback" not in log, log
    resumed = log.count("resumed session")
    assert resumed >= CUTS
    figure(f"{name}: lines each way / cuts (reset, blackhole, blackhole then reset)",
           f"{COUNT} / {made['reset']}, {made['blackhole']}, {made['blackhole then reset']}")
    figure(f"{name}: sessions resumed", resumed)
    figure(f"{name}: seconds until every line was in, after the last cut", elapsed, "s")


def test_heartbeat_client_delivers_every_line_once_through_cuts(tmp_path, stopping, figure):
    """Through 20 random cuts, every stdin line of heartbeat-client reaches
    the server's application once, in order, and every server line
    reaches its stdout once, in order; no session is lost."""
    app = SessionApp(tmp_path / "record")
    stopping(app)
    proxy = FaultProxy(app.linePort)
    stopping(proxy)
    client, received, errors = quick_client(proxy, tmp_path, stopping)
    feed(client.stdin)
    made = cut_at_random(proxy, seed(), count_in(errors, "resumed the session"))
    elapsed = wait_until_complete(app.record, received)
    check(app, received, figure, "proof over lines", made, elapsed)
    assert "lost the session" not in errors.read_text()


def test_the_websocket_client_delivers_every_message_once_through_cuts(
    tmp_path, stopping, figure
):
    """Through 20 random cuts, every message of the library's WebSocket
    client reaches the server's application once, in order, and every
    message of the server reaches the client's once, in order."""
    app = SessionApp(tmp_path / "record")
    stopping(app)
    proxy = FaultProxy(app.websocketPort)
    stopping(proxy)
    received = tmp_path / "received"
    errors = tmp_path / "stderr"
    client = subprocess.Popen(
        [sys.executable, "tests/wsclient.py", str(proxy.port), str(COUNT), str(RATE),
         str(received)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=open(errors, "wb"),
    )
    stopping(client)
    made = cut_at_random(proxy, seed(), count_in(errors, "resumed the session"))
    elapsed = wait_until_complete(app.record, received)
    check(app, received, figure, "proof over WebSocket", made, elapsed)
    assert "lost the session" not in errors.read_text()
