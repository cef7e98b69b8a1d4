"""
The cluster on a real Redis: three or more nodes as separate processes,
clients on each, and Redis or a node failing under them.
"""

import json
import signal
import subprocess
import time

import pytest

from .clusternodes import (
    NODE_TIMEOUT,
    SHORT,
    SHORT_HEARTBEAT,
    TIMEOUT,
    Node,
    PresenceWatcher,
    names,
    nodes_of,
    until_gone,
)
from .processes import CLIENT, LoggedProcess, Peer, free_port, wait_for
from .redisserver import RedisServer, require_redis


@pytest.fixture
def cluster(redis):
    """
    Three broadcasting nodes on one Redis, and a presence watcher.
    """
    nodes = []
    watcher = PresenceWatcher(redis)
    try:
        for n in range(1, 4):
            nodes.append(Node(redis, f"node{n}", "--broadcast"))
        yield nodes, watcher
    finally:
        watcher.close()
        for node in nodes:
            node.stop()
        for node in nodes:
            assert "Traceback" not in node.log(), node.log()


def test_a_broadcast_reaches_every_connection_once_in_order(cluster):
    """Lines sent on one node reach every other connection of the cluster,
    on every node, each exactly once and in the order they were sent."""
    nodes, _ = cluster
    sender = nodes[0].peer("sender")
    receivers = [node.peer(f"r{i}{j}") for i, node in enumerate(nodes) for j in (1, 2)]
    lines = [b"line %d" % n for n in range(200)]
    sender.send(b"".join(line + b"\n" for line in lines))
    for receiver in receivers:
        assert [receiver.readline() for _ in lines] == lines
    for peer in receivers + [sender]:
        peer.closed_within(0.3)
        assert _applicationLines(peer) == []


def _applicationLines(peer):
    """What C{peer} has received beside the server's pings."""
    return [line for line in peer._buffer.split(b"\n")
            if line and not line.startswith(b"ping ")]


def test_presence_follows_joins_closes_and_timeouts(cluster, redis):
    """Who is connected where is in presence across nodes; a close and a
    heartbeat timeout each take a connection out, with its reason."""
    nodes, watcher = cluster
    nodes.append(Node(redis, "node4", *SHORT_HEARTBEAT))
    phone = nodes[1].peer("bob")
    laptop = nodes[2].peer("bob")
    alice = nodes[3].peer("alice")
    assert set(names(redis)) >= {"alice", "bob"}
    assert nodes_of(redis, "bob") == ["node2", "node3"]
    watcher.wait(lambda events: {("J", "node4", None, "alice"), ("J", "node2", None, "bob"),
                                 ("J", "node3", None, "bob")} <= set(events))
    phone.close()
    watcher.wait(lambda events: ("L", "node2", "c", "bob") in events, what="bob's close")
    assert nodes_of(redis, "bob") == ["node3"]
    # Alice stops answering: her heartbeat times out.
    started = time.monotonic()
    watcher.wait(lambda events: ("L", "node4", "t", "alice") in events,
                 what="alice's timeout")
    assert time.monotonic() - started < TIMEOUT + 1.0
    assert "alice" not in names(redis)
    laptop.close()
    alice.close()


def test_a_killed_node_leaves_presence_within_its_timeout(cluster, redis, figure):
    """SIGKILL a node: its connections leave presence within the node
    timeout plus a second, each with one leave (node died), heard once."""
    nodes, watcher = cluster
    victim = nodes[1]
    peers = [victim.peer(f"v{n}") for n in range(3)]
    survivor = nodes[2].peer("s1")
    watcher.wait(lambda events: len([e for e in events if e[0] == "J"]) >= 4)
    killed = time.monotonic()
    victim.kill()
    elapsed = until_gone(redis, ["v0", "v1", "v2"], timeout=NODE_TIMEOUT + 3)
    figure("node SIGKILL: its connections out of presence after (timeout 1 s)", elapsed, "s")
    assert elapsed < NODE_TIMEOUT + 1.0
    watcher.wait(lambda events: len([e for e in events if e[0] == "L"]) >= 3)
    time.sleep(0.5)
    assert sorted(watcher.leaves()) == [("L", "node2", "d", f"v{n}") for n in range(3)]
    assert "s1" in names(redis)
    assert sorted(redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1")) == ["node1", "node3"]
    assert time.monotonic() - killed >= NODE_TIMEOUT * 0.9
    for peer in peers + [survivor]:
        peer.close()


def test_a_stopped_node_is_taken_for_dead_then_comes_back(cluster, redis):
    """SIGSTOP a node past its timeout: its connections leave (node died);
    SIGCONT: it registers again and they are back, joins and all."""
    nodes, watcher = cluster
    frozen = nodes[2]
    peer = frozen.peer("sleepy")
    # The node writes a join to Redis after the handshake's answer: stopped
    # before it does, the connection would never have been in presence.
    watcher.wait(lambda events: ("J", "node3", None, "sleepy") in events)
    frozen.signal(signal.SIGSTOP)
    try:
        until_gone(redis, ["sleepy"], timeout=NODE_TIMEOUT + 3)
        watcher.wait(lambda events: ("L", "node3", "d", "sleepy") in events)
    finally:
        frozen.signal(signal.SIGCONT)
    # The peer answers no pings, but its timeout is not over yet.
    wait_for(lambda: "sleepy" in names(redis), timeout=5, what="sleepy back")
    watcher.wait(lambda events: events.count(("J", "node3", None, "sleepy")) == 2)
    frozen.waitRegistered(times=2)
    peer.close()


def test_a_node_stopped_with_sigterm_leaves_at_once(cluster, redis):
    """SIGTERM: the node's connections leave presence at once, as closed,
    not a node timeout later."""
    nodes, watcher = cluster
    nodes[0].peer("leaving")
    watcher.wait(lambda events: ("J", "node1", None, "leaving") in events)
    started = time.monotonic()
    nodes[0].signal(signal.SIGTERM)
    elapsed = until_gone(redis, ["leaving"], timeout=5)
    assert elapsed < NODE_TIMEOUT / 2
    watcher.wait(lambda events: ("L", "node1", "c", "leaving") in events)
    assert "node1" not in redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1")
    assert time.monotonic() - started < 5


def test_redis_hung_then_back(cluster, redis):
    """Redis SIGSTOPped past the node timeout: every node keeps serving its
    own connections (pings, broadcasts within the node) and says that a
    cross-node line failed; once Redis is back, presence is whole, lines
    cross again, and no node was taken for dead for the time nobody could
    beat."""
    nodes, watcher = cluster
    a1, a2 = nodes[0].peer("a1"), nodes[0].peer("a2")
    b1 = nodes[1].peer("b1")
    watcher.wait(lambda events: len(events) >= 3, what="the joins")
    redis.pause()
    try:
        time.sleep(NODE_TIMEOUT * 2.5)
        a1.send(b"ping alive\n")
        assert a1.readline() == b"pong alive"
        a1.send(b"within the node\n")
        assert a2.readline() == b"within the node"
        wait_for(lambda: "cross-node broadcast failed" in nodes[0].log(),
                 what="the failure's log line")
        late = nodes[1].peer("late")
    finally:
        redis.resume()
    for node in nodes:
        node.waitRegistered(times=2)
    wait_for(lambda: {"a1", "a2", "b1", "late"} <= set(names(redis)),
             what="presence whole again")
    a1.send(b"across again\n")
    assert b1.readline() == b"across again"
    assert late.readline() == b"across again"
    # Long enough for any survivor to have reaped the others.
    time.sleep(NODE_TIMEOUT * 1.5)
    assert watcher.leaves() == []
    assert sorted(redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1")) == [
        "node1", "node2", "node3"]


def test_redis_restarted_empty(cluster, redis, figure):
    """Redis killed and started again empty: within one node timeout of its
    return, every node has registered again with all its connections."""
    nodes, _ = cluster
    peers = [node.peer(f"p{n}") for n, node in enumerate(nodes)]
    redis.restart()
    back = time.monotonic()
    wait_for(lambda: {"p0", "p1", "p2"} <= set(names(redis)), timeout=NODE_TIMEOUT + 2,
             what="presence whole again")
    elapsed = time.monotonic() - back
    figure("Redis restarted empty: presence whole again after", elapsed, "s")
    assert elapsed < NODE_TIMEOUT
    assert sorted(redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1")) == [
        "node1", "node2", "node3"]
    peers[0].send(b"after the restart\n")
    assert peers[2].readline() == b"after the restart"


def test_redis_unreachable_at_start():
    """A node whose Redis is not there yet serves its clients, says so in
    one line, and joins the cluster once Redis appears."""
    require_redis()
    port = free_port()
    node = redis = None
    try:
        node = Node(None, "early", url=f"redis://127.0.0.1:{port}/0", register=False)
        peer = node.peer()
        peer.send(b"hello\n")
        assert peer.readline() == b"hello"
        wait_for(lambda: "cannot reach Redis" in node.log(), what="the log line")
        time.sleep(1.0)
        assert node.log().count("cannot reach Redis") == 1
        redis = RedisServer()
        redis.port = port
        redis.restart()
        node.waitRegistered()
        wait_for(lambda: len(names(redis)) == 1, what="the early peer in presence")
    finally:
        if node is not None:
            node.stop()
        if redis is not None:
            redis.close()


def test_workers_are_nodes_that_share_broadcasts_and_one_status_port(redis):
    """--workers 2 --redis: each worker is a node (ID/1, ID/2), a broadcast
    reaches the connections of both, and the supervisor's status port
    shows both workers' connections and nodes."""
    from urllib.request import urlopen

    from .webserver import WebServer

    server = WebServer("--redis", redis.url, "--node-id", "box", "--workers", "2",
                       "--broadcast", *SHORT, ports=("port", "status-port"))
    try:
        wait_for(lambda: sorted(redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1"))
                 == ["box/1", "box/2"], what="both workers registered")
        # The kernel hands each connection to whichever worker accepts
        # first: connect until both workers hold some, a bounded number.
        peers = []
        spread = set()
        while len(peers) < 12 or (spread != {"box/1", "box/2"} and len(peers) < 100):
            peer = Peer(server.ports["port"])
            peer.send(b"heartbeat/1 name=w%d\n" % len(peers))
            assert peer.readline().startswith(b"heartbeat/1 ")
            peers.append(peer)
            wait_for(lambda: len(names(redis)) == len(peers), what="all in presence")
            spread |= set(nodes_of(redis, f"w{len(peers) - 1}"))
        assert spread == {"box/1", "box/2"}
        peers[0].send(b"to all workers\n")
        for peer in peers[1:]:
            assert peer.readline() == b"to all workers"

        def status(path):
            return json.load(urlopen(server.url("status-port", path), timeout=5))

        wait_for(lambda: status("/status.json")["totals"]["open"] == len(peers),
                 what="both workers' reports")
        snapshot = status("/status.json")
        assert sorted(n["node"] for n in snapshot["local_nodes"]) == ["box/1", "box/2"]
        assert len(snapshot["connections"]) == len(peers)
        presence = status("/presence.json")
        assert sorted((n["node"], n["alive"]) for n in presence["nodes"]) == [
            ("box/1", True), ("box/2", True)]
        assert sum(n["connections"] for n in presence["nodes"]) == len(peers)
        where = status("/presence.json?name=w3")
        assert where["online"] and where["connections"][0]["transport"] == "line"
        metrics = urlopen(server.url("status-port", "/metrics"), timeout=5).read().decode()
        assert f'heartbeat_connections_open{{transport="line"}} {len(peers)}.0' in metrics
        assert 'heartbeat_cluster_up{node="box/1"} 1.0' in metrics
        assert 'heartbeat_cluster_messages_sent_total{node="box/' in metrics
        for peer in peers:
            peer.close()
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def test_the_client_command_names_itself(cluster, redis):
    """heartbeat-client --name NAME is present under that name on the node
    it reached, and leaves when it exits."""
    nodes, watcher = cluster
    client = LoggedProcess(CLIENT + ["--name", "cli-user", f"127.0.0.1:{nodes[1].port}"],
                           stdin=subprocess.PIPE)
    try:
        wait_for(lambda: nodes_of(redis, "cli-user") == ["node2"], what="the client present")
    finally:
        client.stop()
    watcher.wait(lambda events: ("L", "node2", "c", "cli-user") in events)


def test_a_bad_client_name_is_refused_in_one_line():
    """A name the server could never grant is refused before connecting."""
    result = subprocess.run(CLIENT + ["--name", "a#b", "127.0.0.1:1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--name: '#' is kept for connection keys: not 'a#b'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_password_is_sent_and_a_wrong_one_said_once():
    """A Redis that requires a password: the right one joins the cluster;
    a wrong one is said in one error line (not one per attempt, and no
    traceback when the node stops), and the node serves its own
    connections all the same."""
    require_redis()
    redis = RedisServer(password="s3cret")
    nodes = []
    try:
        nodes.append(Node(redis, "right"))
        wrong = redis.url.replace(":s3cret@", ":wrong@")
        nodes.append(Node(redis, "badpass", url=wrong, register=False))
        peer = nodes[1].peer()
        peer.send(b"still served\n")
        assert peer.readline() == b"still served"
        wait_for(lambda: "refused this node" in nodes[1].log(), what="the refusal")
        time.sleep(1.5)
        assert nodes[1].log().count("refused this node") == 1
        assert "could not auth" not in nodes[1].log()
        assert "s3cret" not in nodes[1].log() and ":wrong@" not in nodes[1].log()
        assert redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1") == ["right"]
    finally:
        for node in nodes:
            node.stop()
        redis.close()
    for node in nodes:
        assert "Traceback" not in node.log() and "Unhandled" not in node.log(), node.log()


def test_a_node_reaches_redis_over_tls(tmp_path):
    """rediss:// with ?ca= checks Redis's certificate against that CA and
    joins the cluster over TLS."""
    from .certificates import make_certificate

    require_redis()
    key, certificate, _ = make_certificate(tmp_path)
    port = free_port()
    redis = RedisServer("--port", "0", "--tls-port", str(port), "--tls-cert-file",
                        str(certificate), "--tls-key-file", str(key),
                        "--tls-auth-clients", "no")
    node = None
    try:
        node = Node(redis, "secure", url=f"rediss://127.0.0.1:{port}/0?ca={certificate}")
        peer = node.peer("tls-user")
        wait_for(lambda: "tls-user" in names(redis), what="presence over TLS")
        peer.close()
    finally:
        if node is not None:
            node.stop()
        redis.close()


def test_clusters_in_two_databases_never_meet(redis):
    """Two clusters on one Redis, each in its own database, share nothing:
    neither presence nor broadcasts nor nodes."""
    first = Node(redis, "first", "--broadcast")
    second = Node(redis, "second", "--broadcast", url=redis.url[:-1] + "1")
    try:
        here, there = first.peer("here"), second.peer("there")
        other = second.peer("other")
        here.send(b"for the first cluster\n")
        other.send(b"for the second cluster\n")
        assert there.readline() == b"for the second cluster"
        assert names(redis) == ["here"]
        assert redis.lines("-n", "1", "ZRANGE", "heartbeat:names", "0", "-1") == [
            "other", "there"]
        assert redis.lines("ZRANGE", "heartbeat:nodes", "0", "-1") == ["first"]
        assert _applicationLines(there) == []
    finally:
        first.stop()
        second.stop()
