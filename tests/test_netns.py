"""
The namespaces behind the real-fault tests do what those tests rely on.
"""

import subprocess
import sys
import textwrap

from .netns import ECHO, link  # noqa: F401  (a fixture)

PEER = textwrap.dedent("""
    import socket, sys
    peer = socket.create_connection((sys.argv[1], 7000), timeout=5)
    for command in sys.stdin:
        peer.sendall(command.encode())
        peer.settimeout(float(command.split()[1]))
        try:
            print("got", peer.recv(100).decode().split()[0], flush=True)
        except socket.timeout:
            print("silence", flush=True)
""")


def test_a_cut_link_is_silent_and_a_mended_one_carries_on(link):  # noqa: F811
    """Across a link set down, data vanishes with no reset and no close;
    set up again, TCP delivers what was waiting."""
    server = subprocess.Popen(
        link.command(link.a, [sys.executable, "-c", ECHO, link.addressA]),
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout.readline() == "listening\n"
        peer = subprocess.Popen(
            link.command(link.b, [sys.executable, "-c", PEER, link.addressA]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            peer.stdin.write("one 5\n")
            peer.stdin.flush()
            assert peer.stdout.readline() == "got one\n"
            link.down()
            peer.stdin.write("two 1\n")
            peer.stdin.flush()
            assert peer.stdout.readline() == "silence\n"
            link.up()
            peer.stdin.write("three 5\n")
            peer.stdin.flush()
            assert peer.stdout.readline() == "got two\n"
        finally:
            peer.kill()
            peer.wait()
    finally:
        server.kill()
        server.wait()


def test_namespaces_are_removed(link):  # noqa: F811
    """Closing a link leaves no namespace behind."""
    names = (link.a, link.b)
    link.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    assert not any(name in listed.stdout for name in names)
