"""
Sessions across a path that dies silently in the kernel: a veth link set
down between two network namespaces (no FIN, no RST), with the server
still holding the half-open connection when the client comes back.
"""

import subprocess

from .netns import link  # noqa: F401 (a fixture)
from .processes import CLIENT, ENV, ROOT, wait_for
from .resumeproof import SessionApp, count_in, feed, first_difference, lines_of

COUNT = 2000
RATE = 500


def numbered(prefix):
    return [prefix + b"%d" % n for n in range(1, COUNT + 1)]


def test_a_client_back_over_a_mended_link_takes_its_session_over(
    link, tmp_path, stopping, figure  # noqa: F811
):
    """The link is set down while lines flow both ways: the client finds
    the server dead and, once the link is back, resumes its session while
    the server still holds the old connection, half-open, which is closed
    at once; every line reaches the other side's application once, in
    order."""
    record = tmp_path / "record"
    # A server slow to give up on a peer (no pong deadline, 10 s), and a
    # client quick to (its own pong timeout, 0.2 s).
    app = SessionApp(record, "--interface", link.addressA, "--pong-timeout", "0",
                     "--timeout", "10", "--echo", prefix=link.command(link.a, []))
    stopping(app)
    received, errors = tmp_path / "stdout", tmp_path / "stderr"
    client = subprocess.Popen(
        link.command(link.b, CLIENT + [
            "--initial-delay", "0.05", "--max-delay", "0.2", "--interval", "0.2", "--timeout", "3",
            "--pong-timeout", "0.2", f"{link.addressA}:{app.linePort}"]),
        cwd=ROOT, env=ENV, stdin=subprocess.PIPE,
        stdout=open(received, "wb"), stderr=open(errors, "wb"),
    )
    stopping(client)
    feed(client.stdin, COUNT, RATE)
    wait_for(lambda: len(lines_of(received)) > COUNT // 4, timeout=20, what="lines flowing")
    link.down()
    wait_for(lambda: count_in(errors, "silent for")() > 0, timeout=10,
             what="the client finding the server dead")
    link.up()
    wait_for(lambda: count_in(errors, "resumed the session")() > 0, timeout=20,
             what="the session resumed")
    wait_for(lambda: len(lines_of(received)) >= COUNT and len(lines_of(record)) >= COUNT,
             timeout=60, interval=0.05, what="every line")
    got = lines_of(record)
    assert got == numbered(b"c"), "server: " + first_difference(got, numbered(b"c"))
    got = lines_of(received)
    assert got == numbered(b"s"), "client: " + first_difference(got, numbered(b"s"))
    log = app.log()
    assert "taking it over from" in log, log
    assert "lost the session" not in errors.read_text()
    figure("sessions over a link set down (half-open, taken over): lines each way",
           COUNT)
