"""
The README's commands and examples, each run as a user would run it (a
program saved and started, a command typed), against running servers, with
what it prints checked; so they cannot rot.

The ports the README gives are swapped for free ones on 127.0.0.1, and
C{.venv/bin/} for this environment's; nothing else is changed but where a
test says so.
"""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from .apiclient import Api
from .certificates import make_certificate
from .conftest import NODE_MODULES
from .processes import ENV, ROOT, LoggedProcess, Peer, accepting, free_port, wait_for

README = (ROOT / "README.rst").read_text()
BIN = Path(sys.executable).parent
# Every port the README's examples listen on or talk to.
README_PORTS = (1234, 1235, 1236, 1237, 1238, 1239, 1240, 8080, 8081, 8082)


def python_blocks():
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", README)
    return [textwrap.dedent(block).strip() + "\n" for block in blocks]


def literal_block(first_line):
    """The literal block (indented four spaces) that starts with C{first_line}."""
    start = README.index("\n    " + first_line) + 1
    lines = []
    for line in README[start:].splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def commands():
    return re.findall(r"::\n\n    (python3 -m venv .*)\n", README)


@pytest.fixture(scope="module")
def ports():
    """A free port on 127.0.0.1 for each port of the README."""
    return {port: free_port() for port in README_PORTS}


def localized(text, ports):
    """C{text} with this environment's commands, and the test's ports on
    127.0.0.1 for the README's."""
    text = text.replace(".venv/bin/", f"{BIN}/").replace("localhost", "127.0.0.1")
    text = re.sub(r"(--(?:websocket-)?port) (\d{4})\b", r"\1 tcp:\2:interface=127.0.0.1", text)
    text = re.sub(r'"tcp:(\d{4})"', r'"tcp:\1:interface=127.0.0.1"', text)
    pattern = r"\b(%s)\b" % "|".join(map(str, ports))
    return re.sub(pattern, lambda match: str(ports[int(match.group())]), text)


class Program:
    """
    A README example or command, running, its output kept in files.
    """

    def __init__(self, argv, cwd, stdin=None):
        self.out = cwd / f"out-{time.monotonic_ns()}"
        self.err = cwd / f"err-{time.monotonic_ns()}"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(
                argv, cwd=cwd, env=ENV, stdout=out, stderr=err,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)

    def stdout(self):
        return self.out.read_text()

    def stderr(self):
        return self.err.read_text()

    def type(self, line):
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def printed(self, text, stream="stdout", timeout=15):
        """Wait until the program has printed C{text}."""
        read = getattr(self, stream)
        wait_for(lambda: text in read() or self.process.poll() is not None,
                 timeout, what=repr(text))
        assert text in read(), f"exited: {self.stdout()}{self.stderr()}"

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def listening(port, program):
    def up():
        assert program.process.poll() is None, program.stdout() + program.stderr()
        return accepting(port)

    wait_for(up, 30, what=f"port {port}")


def python_program(code, cwd, name):
    path = cwd / name
    path.write_text(code)
    return Program([str(BIN / "python"), str(path)], cwd)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The directory the README's commands run in, as a clone would be."""
    return tmp_path_factory.mktemp("clone")


@pytest.fixture(scope="module")
def servers(clone, ports):
    """The README's two servers, the first command's and the one with the
    browser and operator ports, running side by side from one directory."""
    first = localized(commands()[0].rsplit(" && ", 1)[1], ports)
    [second] = re.findall(r"^    (\S*twistd -n .*--websocket-port.*)$", README, re.M)
    second = localized(second, ports)
    started = [Program(shlex.split(command), clone) for command in (first, second)]
    try:
        listening(ports[1234], started[0])
        for port in (1237, 8080, 8081):
            listening(ports[port], started[1])
        yield started
    finally:
        for program in started:
            program.stop()


def test_readme_opens_with_the_two_commands():
    """The set-up commands come first, and CI runs the test one verbatim."""
    install, test = commands()[:2]
    assert install.endswith("twistd -n --pidfile= heartbeat --port 1234")
    assert "pytest" in test
    assert README.index(install) < README.index("The server\n")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci.splitlines()


def test_the_servers_run_side_by_side_from_one_clone(servers, clone, ports):
    """The first command's server answers nc's ping, and the second server
    started beside it in the same directory leaves no pid file behind."""
    with socket.create_connection(("127.0.0.1", ports[1234]), timeout=5) as nc:
        nc.sendall(b"ping\n")
        assert nc.makefile("rb").readline() == b"pong\n"
    assert not (clone / "twistd.pid").exists()
    for name, path in (("status-port", "/status.json"), ("websocket-port", "/heartbeat.js")):
        port = ports[8081 if name == "status-port" else 8080]
        assert urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status == 200


def client_commands():
    return re.findall(r"``(\.venv/bin/heartbeat-client [^`]+)``", README)


def test_the_client_command_echoes_and_shows_a_ping(servers, clone, ports):
    """The README's client command: hello comes back; ping shows its round
    trip."""
    command = client_commands()[0]
    client = Program(shlex.split(localized(command, ports)), clone, stdin=True)
    try:
        client.type("hello")
        client.printed("hello\n")
        client.type("ping")
        client.printed(f"pong from 127.0.0.1:{ports[1234]}: round trip", "stderr")
        assert client.stdout() == "hello\n"
    finally:
        client.stop()


def test_the_mixin_example_answers_and_drops(clone, ports):
    """The mixin example serves netstrings: PING is answered, a line gets
    its reply, a silent peer is pinged and then dropped, with a line
    printed.  (Its 20 s and 50 s are made 0.2 s and 0.5 s.)"""
    code = localized(python_blocks()[0], ports)
    code = code.replace("= 20.0", "= 0.2").replace("= 50.0", "= 0.5")
    program = python_program(code, clone, "chat.py")
    try:
        listening(ports[1235], program)
        with socket.create_connection(("127.0.0.1", ports[1235]), timeout=5) as peer:
            peer.sendall(b"9:PING abcd,5:hello,")
            received = b""
            start = time.monotonic()
            try:
                while chunk := peer.recv(4096):
                    received += chunk
            except ConnectionResetError:
                pass  # an abort, as a dead peer gets
            silent = time.monotonic() - start
        assert received == b"9:PONG abcd,15:you said: hello,6:PING 1,6:PING 2,"
        assert 0.4 < silent < 2
        program.printed("peer silent for ")
        assert re.fullmatch(r"peer silent for \ds, dropping it\n", program.stdout())
    finally:
        program.stop()


def test_the_server_example_shouts_to_everyone(clone, ports):
    """The line server example relays each line, upper-cased, to every
    connection."""
    program = python_program(localized(python_blocks()[1], ports), clone, "shout.py")
    try:
        listening(ports[1236], program)
        peers = [socket.create_connection(("127.0.0.1", ports[1236]), timeout=5)
                 for _ in range(2)]
        time.sleep(0.2)
        peers[0].sendall(b"hi there\n")
        assert [p.makefile("rb").readline() for p in peers] == [b"HI THERE\n"] * 2
        for peer in peers:
            peer.close()
    finally:
        program.stop()


def test_the_client_example_prints_the_echo(servers, clone, ports):
    """The reconnecting client example, run as it is against the first
    server, prints the echo of its hello and keeps running."""
    program = python_program(localized(python_blocks()[2], ports), clone, "printer.py")
    try:
        program.printed("received hello\n")
        time.sleep(0.3)
        assert program.process.poll() is None
    finally:
        program.stop()


def test_the_node_example_prints_what_the_readme_says(servers, clone, ports, runtime):
    """bot.mjs, beside heartbeat.js saved from the server, prints that it is
    connected and the echo: in Node 22 as it is, in Node 20 with the line
    the README says to add for ws."""
    argv, major = runtime
    code = localized(literal_block('import { HeartbeatSocket } from "./heartbeat.js";'),
                     ports)
    directory = clone / ("node22" if major else "node-ws")
    directory.mkdir()
    if major is None:
        code = 'import { WebSocket } from "ws";\n' + code.replace(
            '{ name: "bot" }', '{ name: "bot", WebSocket }')
        os.symlink(NODE_MODULES, directory / "node_modules")
    (directory / "bot.mjs").write_text(code)
    url = f"http://127.0.0.1:{ports[8080]}/heartbeat.js"
    (directory / "heartbeat.js").write_bytes(urlopen(url, timeout=5).read())
    program = Program(argv + ["bot.mjs"], directory)
    try:
        program.printed("got hello from node\n")
        assert program.stdout() == "connected as bot\ngot hello from node\n"
        assert program.stderr() == ""
    finally:
        program.stop()


def test_the_tls_commands_talk(clone, ports, tmp_path):
    """The TLS server and client commands, with a certificate in key.pem
    and cert.pem; the client told to trust it, for 127.0.0.1 rather than
    example.com."""
    make_certificate(tmp_path)
    server_command, client_command = literal_block(
        ".venv/bin/twistd -n --pidfile= heartbeat --port ssl:1238").splitlines()
    server = Program(shlex.split(localized(server_command, ports)), tmp_path)
    client = None
    try:
        listening(ports[1238], server)
        client_command = localized(client_command, ports).replace(
            "tls:example.com:%d" % ports[1238],
            "tls:127.0.0.1:%d:trustRoots=trust" % ports[1238])
        client = Program(shlex.split(client_command), tmp_path, stdin=True)
        client.type("over tls")
        client.printed("over tls\n")
    finally:
        if client is not None:
            client.stop()
        server.stop()


def test_the_chat_example_names_tells_and_routes(clone, ports):
    """The cluster's chat example, run as it is: a join and a leave are told
    to the node's connections, and "@name text" reaches that name only."""
    program = python_program(localized(python_blocks()[3], ports), clone, "chat_server.py")
    try:
        listening(ports[1239], program)
        peers = {}
        for name in ("alice", "bob", "carol"):
            peers[name] = peer = Peer(ports[1239])
            peer.send(b"heartbeat/1 name=%s\n" % name.encode())
            assert peer.readline().startswith(b"heartbeat/1 ")
        assert peers["alice"].readline() == b"alice is here"
        peers["bob"].send(b"@alice hi there\n")
        assert peers["alice"].readline() == b"bob is here"
        assert peers["alice"].readline() == b"carol is here"
        assert peers["alice"].readline() == b"hi there"
        peers["alice"].sock.close()
        assert peers["carol"].readline() == b"carol is here"
        assert peers["carol"].readline() == b"alice left (closed)"
    finally:
        program.stop()


def cluster_commands():
    block = re.search(r"two-node cluster, from a clone, in three terminals::\n\n((?:    .*\n)+)",
                      README).group(1)
    return [line.strip() for line in block.splitlines()]


def test_the_cluster_commands_start_two_nodes_that_share_lines(redis, tmp_path):
    """The Cluster section's commands, on free ports and the test's own
    Redis, make two nodes; its two client commands are both present, and
    what one types, the other prints."""
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
        clients = {}
        for command in client_commands()[1:3]:
            argv = shlex.split(command.replace(".venv/bin/", f"{BIN}/"))
            name = argv[argv.index("--name") + 1]
            host, port = argv[-1].rsplit(":", 1)
            argv[-1] = f"127.0.0.1:{ports[port]}"
            clients[name] = Program(argv, tmp_path, stdin=True)
            started.append(clients[name])
        assert sorted(clients) == ["alice", "bob"]
        wait_for(lambda: sorted(redis.lines("ZRANGE", "heartbeat:names", "0", "-1"))
                 == ["alice", "bob"], what="both names present")
        clients["alice"].type("hello from a")
        clients["bob"].printed("hello from a\n")
    finally:
        for process in started:
            process.stop()


def gateway_commands():
    block = re.search(r"keep them so\)::\n\n((?:    .*\n)+)", README).group(1)
    return [line.strip() for line in block.splitlines()]


def curl_examples():
    """Each curl command of the push API's example, with the answer the
    README shows for it."""
    block = literal_block("$ curl ")
    lines = block.splitlines()
    return [(lines[i][2:], json.loads(lines[i + 1])) for i in range(0, len(lines), 2)]


def same_shape(answer, expected):
    """C{answer} is C{expected} but for what differs from run to run: the
    node, the connection's key and when it was admitted."""
    def masked(value):
        if isinstance(value, dict):
            return {key: "*" if key in ("node", "connection", "since") else masked(item)
                    for key, item in value.items()}
        if isinstance(value, list):
            return [masked(item) for item in value]
        return value

    return masked(answer) == masked(expected)


def test_the_push_gateway_example_runs_as_written(tmp_path, ports):
    """The Verified names section, as a user follows it: the key and token
    files made by its commands, the server started, a token minted by the
    five-line example, the client connected with it as alice (verified),
    and each curl example answering what the README shows, in order, with
    alice printing the lines sent to her."""
    commands = gateway_commands()
    for command in commands[:2]:
        assert subprocess.run(["bash", "-c", command], cwd=tmp_path).returncode == 0
    server = Program(shlex.split(localized(commands[2].split(" && ")[-1], ports)), tmp_path)
    client = None
    try:
        listening(ports[1240], server)
        listening(ports[8082], server)
        minted = python_program(python_blocks()[4], tmp_path, "mint.py")
        assert minted.process.wait(30) == 0, minted.stderr()
        (tmp_path / "alice.token").write_text(minted.stdout())
        [command] = [c for c in client_commands() if "alice.token" in c]
        client = Program(shlex.split(localized(command, ports)), tmp_path, stdin=True)
        token = (tmp_path / "api.token").read_text().strip()
        api = Api(ports[8082], token)
        wait_for(lambda: api.call("GET", "/presence/alice")[1]["online"], what="alice")
        env = dict(ENV, TOKEN=token)
        for command, expected in curl_examples():
            result = subprocess.run(["bash", "-c", localized(command, ports)], cwd=tmp_path,
                                    env=env, capture_output=True, text=True, timeout=30)
            assert same_shape(json.loads(result.stdout), expected), (command, result.stdout)
        client.printed("your order shipped\nmaintenance at noon\n")
        client.printed("server closed the connection: disconnected by server", "stderr")
    finally:
        if client is not None:
            client.stop()
        server.stop()


def test_the_api_table_is_the_api_description():
    """The README's table of the API's operations is the one rendered from
    heartbeat/web/openapi.json, which the server serves and the fuzzing
    tests use: the documentation cannot drift from the API."""
    from .openapi_doc import operations_table

    assert operations_table() in README
