"""
The README's commands and examples, run so they cannot rot.
"""

import re
import subprocess
import sys

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from .helpers import factory_for, lose, take
from .processes import ENV, ROOT, Server

README = (ROOT / "README.rst").read_text()


def python_blocks():
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", README)
    return [re.sub(r"(?m)^    ", "", block) for block in blocks]


def commands():
    return re.findall(r"::\n\n    (python3 -m venv .*)\n", README)


def test_readme_opens_with_the_two_commands():
    """The set-up commands come first, and CI runs the test one verbatim."""
    install, test = commands()[:2]
    assert install.endswith("twistd -n heartbeat --port 1234")
    assert "pytest" in test
    assert README.index(install) < README.index("The server\n")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()


def test_mixin_example_pings_answers_and_drops():
    """The mixin example pings at 20 s, answers PING, and drops at 50 s."""
    namespace = {}
    exec(python_blocks()[0], namespace)
    clock = Clock()
    protocol = factory_for(namespace["ChatProtocol"], clock).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"9:PING abcd,5:hello,")
    assert take(transport) == b"9:PONG abcd,15:you said: hello,"
    clock.advance(20.01)
    assert take(transport) == b"6:PING 1,"
    clock.pump([1.0] * 30)
    assert transport.disconnected


def test_server_example_broadcasts_upper_case():
    """The server example shouts every line to every connection."""
    namespace = {}
    exec(python_blocks()[1], namespace)
    factory = namespace["factory"]
    factory.clock = Clock()
    assert factory.maxConnections == 5000
    peers = []
    for _ in range(2):
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        peers.append(protocol)
    peers[0].dataReceived(b"hi\n")
    assert [p.transport.value() for p in peers] == [b"HI\n", b"HI\n"]


def test_client_example_talks_to_a_real_server():
    """The client example, pointed at a live server, gets its echo."""
    server = Server()
    try:
        code = python_blocks()[2].replace("1234", str(server.port))
        code += (
            "\noriginal = Printer.messageReceived\n"
            "def stop(self, line):\n"
            "    original(self, line)\n"
            "    reactor.stop()\n"
            "Printer.messageReceived = stop\n"
            "reactor.callLater(20, reactor.stop)\n"
            "reactor.run()\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], env=ENV, capture_output=True,
            text=True, timeout=60,
        )
        assert "received hello" in result.stdout, result.stderr
    finally:
        server.stop()


def test_chat_example_names_tells_and_routes():
    """The cluster's chat example: a join and a leave are told to the
    node's connections, and "@name text" reaches that name only."""
    namespace = {}
    exec(python_blocks()[3], namespace)
    factory = namespace["factory"]
    factory.clock = Clock()
    peers = {}
    for name in ("alice", "bob", "carol"):
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"heartbeat/1 name=%s\n" % name.encode())
        peers[name] = protocol
    for protocol in peers.values():
        protocol.transport.clear()
    peers["bob"].dataReceived(b"@alice hi there\n")
    assert peers["alice"].transport.value() == b"hi there\n"
    assert peers["carol"].transport.value() == b""
    lose(peers["alice"])
    assert peers["bob"].transport.value().endswith(b"alice left (closed)\n")
    factory.stopFactory()


def cluster_commands():
    block = re.search(r"two-node cluster, from a clone, in three terminals::\n\n((?:    .*\n)+)",
                      README).group(1)
    return [line.strip() for line in block.splitlines()]


def test_cluster_commands_start_two_nodes_that_share_lines(redis):
    """The Cluster section's commands, on free ports and the test's own
    Redis, make two nodes whose clients hear each other."""
    import shlex

    from .processes import LoggedProcess, Peer, wait_for
    from .redisserver import free_port

    started = []
    try:
        ports = {}
        for line in cluster_commands()[1:]:
            argv = shlex.split(line.split(" && ")[-1])
            assert argv[0] == ".venv/bin/twistd" and "--broadcast" in argv
            port = free_port()
            ports[argv[argv.index("--port") + 1]] = port
            argv[argv.index("--port") + 1] = f"tcp:{port}:interface=127.0.0.1"
            argv[argv.index("--redis") + 1] = redis.url
            started.append(LoggedProcess(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
                + argv[1:]))
        assert sorted(ports) == ["1234", "1235"]
        wait_for(lambda: sorted(redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1"))
                 == ["a", "b"], what="both nodes")
        alice, bob = Peer(ports["1234"]), Peer(ports["1235"])
        for peer in (alice, bob):
            peer.send(b"ping ready\n")
            assert peer.readline() == b"pong ready"
        alice.send(b"hello from a\n")
        assert bob.readline() == b"hello from a"
    finally:
        for process in started:
            process.stop()
