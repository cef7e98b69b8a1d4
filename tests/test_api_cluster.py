"""
The push API across a cluster on a real Redis: a backend that reaches one
node reaches every name wherever it is connected, and with --workers the
supervisor's API reaches every worker's connections.
"""

from .apiclient import Api, api_options, listening, token_for
from .clusternodes import Node, names, nodes_of
from .processes import TWISTD, LoggedProcess, Peer, free_port, wait_for
from .tokens import SECRET


def test_one_nodes_api_reaches_names_on_another_node(redis, tmp_path):
    """A line sent through node a's API reaches alice on node b; presence,
    from Redis, says where each name is and whether it is verified (alice's
    token proved hers on b; bob named himself on a); a broadcast reaches
    both nodes' connections, and a disconnect closes hers on b."""
    options, port = api_options(tmp_path)
    key = tmp_path / "jwt.key"
    key.write_bytes(SECRET)
    a = Node(redis, "a", *options)
    b = Node(redis, "b", "--jwt-key-file", str(key))
    try:
        listening(port)
        api = Api(port)
        alice = b.connect()
        alice.send(b"auth " + token_for(SECRET, "alice") + b"\nheartbeat/1\n")
        assert b" name=alice " in alice.readline()
        bob = a.peer("bob")
        wait_for(lambda: names(redis) == ["alice", "bob"], what="both in presence")
        assert api.send("alice", b"from a backend") == (200, {"sent": 1})
        assert alice.readline() == b"from a backend"
        for name, node, verified in (("alice", "b", True), ("bob", "a", False)):
            [connection] = api.call("GET", f"/presence/{name}")[1]["connections"]
            assert (connection["node"], connection["verified"]) == (node, verified)
        assert api.call("GET", "/presence")[1]["names"] == ["alice", "bob"]
        assert api.call("POST", "/broadcast", b"to everyone")[0] == 200
        assert alice.readline() == bob.readline() == b"to everyone"
        assert api.call("DELETE", "/connections/alice") == (200, {"disconnected": 1})
        assert alice.readline() == b"error disconnected by server"
        wait_for(lambda: names(redis) == ["bob"], what="alice to leave presence")
    finally:
        a.stop()
        b.stop()


def test_the_supervisor_serves_the_api_for_every_worker(redis, tmp_path):
    """--workers 2 --redis --api-port: one API, on the supervisor, reaches
    the named connections of both workers."""
    options, port = api_options(tmp_path)
    linePort = free_port()
    server = LoggedProcess(TWISTD + [
        "-n", "--pidfile=", "--logfile=-", "heartbeat",
        "--port", f"tcp:{linePort}:interface=127.0.0.1", "--redis", redis.url,
        "--node-id", "box", "--workers", "2", "--interval", "5", "--timeout", "11",
        *options])
    try:
        wait_for(lambda: sorted(redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1"))
                 == ["box/1", "box/2"], what="both workers registered")
        listening(port)
        api = Api(port)
        peers = {}
        # The kernel hands each connection to whichever worker accepts first.
        while len(peers) < 100 and {n for p in peers for n in nodes_of(redis, p)} != {
                "box/1", "box/2"}:
            name = f"w{len(peers)}"
            peers[name] = Peer(linePort)
            peers[name].send(b"heartbeat/1 name=%s\n" % name.encode())
            assert peers[name].readline().startswith(b"heartbeat/1 ")
            wait_for(lambda: name in names(redis), what=f"{name} in presence")
        assert {n for p in peers for n in nodes_of(redis, p)} == {"box/1", "box/2"}
        for name, peer in peers.items():
            assert api.send(name, b"for " + name.encode()) == (200, {"sent": 1})
            assert peer.readline() == b"for " + name.encode()
        assert api.call("GET", "/presence")[1]["count"] == len(peers)
        for peer in peers.values():
            peer.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
