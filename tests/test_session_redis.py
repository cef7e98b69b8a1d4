"""
Sessions in Redis, against a real redis-server: a client's session moves
between the nodes of a cluster and survives a node's restart, with every
line delivered once, in order, both ways.
"""

import re
import signal
import time

from heartbeat._cluster.scripts import BEGIN, REAP, UNREGISTER
from heartbeat._session.scripts import COMMIT, TAKE

from .processes import FaultProxy, wait_for
from .resumeproof import (
    SessionApp,
    count_in,
    feed,
    first_difference,
    lines_of,
    quick_client,
)

COUNT = 3000
RATE = 1000


def numbered(prefix, count=COUNT):
    return [prefix + b"%d" % n for n in range(1, count + 1)]


def node(redis, record, name, life=1):
    return SessionApp(record, "--redis", redis.url, "--node-id", name, "--echo",
                      name=f"{name}{life}")


def two_nodes_and_a_client(redis, tmp_path, stopping):
    """
    Nodes a and b recording their application's lines, and a
    heartbeat-client fed numbered lines through a fault proxy to a.

    @return: the record, the nodes, the proxy, the client's stdout and
        stderr, and a count of the times it resumed its session.
    """
    record = tmp_path / "record"
    nodes = {"a": node(redis, record, "a"), "b": node(redis, record, "b")}
    for app in nodes.values():
        stopping(app)
    proxy = FaultProxy(nodes["a"].linePort)
    stopping(proxy)
    client, received, errors = quick_client(proxy, tmp_path, stopping)
    resumed = count_in(errors, "resumed the session")
    # Its session starts on a: the handshake's answer is in.
    wait_for(count_in(errors, "following the server's settings"), timeout=20,
             what="the client's session on a")
    feed(client.stdin, COUNT, RATE)
    return record, nodes, proxy, received, errors, resumed


def recorded_in_redis(redis):
    """The client lines the session's record in Redis counts."""
    [key] = [key for key in redis.lines("KEYS", "heartbeat:session:*")
             if not key.endswith(":lines")]
    return int(redis.cli("HGET", key, "received"))


def test_a_session_moves_between_nodes_and_outlives_a_restart(redis, tmp_path, stopping, figure):
    """A client whose path goes silent and who comes back through another
    node resumes its session there (the first node closes the half-open
    connection it still had); one whose node is stopped and started again
    resumes on it: every server line reaches the client once, in order,
    and every client line reaches the nodes' applications in order, none
    lost (see handed_again)."""
    record, nodes, proxy, received, errors, resumed = two_nodes_and_a_client(
        redis, tmp_path, stopping)

    def move(to, cut):
        before = resumed()
        proxy.command(f"target {nodes[to].linePort}")
        cut()
        wait_for(lambda: resumed() > before, timeout=20, what=f"the session resumed on {to}")
        time.sleep(0.3)

    time.sleep(0.3)
    move("b", lambda: proxy.command("blackhole"))
    assert "moved to another node" in wait_for(
        lambda: "moved to another node" in nodes["a"].log() and nodes["a"].log(),
        what="node a forgetting the session")
    move("a", lambda: proxy.command("blackhole"))
    # Node a stopped (SIGTERM) and started again under the same id.
    before = resumed()
    nodes["a"].process.send_signal(signal.SIGTERM)
    nodes["a"].process.wait(10)
    nodes["a"] = node(redis, record, "a", life=2)
    stopping(nodes["a"])
    proxy.command(f"target {nodes['a'].linePort}")
    wait_for(lambda: resumed() > before, timeout=20, what="the session resumed on a again")
    time.sleep(0.3)
    move("b", lambda: proxy.command("reset"))
    wait_for(lambda: len(lines_of(received)) >= COUNT and len(lines_of(record)) >= COUNT,
             timeout=60, interval=0.05, what="every line")
    time.sleep(0.5)
    got = lines_of(received)
    assert got == numbered(b"s"), "client: " + first_difference(got, numbered(b"s"))
    repeated = handed_again(lines_of(record))
    assert "lost the session" not in errors.read_text()
    for app in nodes.values():
        assert "Traceback" not in app.log(), app.log()
    figure("sessions in Redis: lines each way, moves between nodes and restarts",
           f"{COUNT}, 4 moves (one across a restart)")
    figure("sessions in Redis, 4 moves: client lines handed to an application again",
           repeated)


def handed_again(got):
    """
    Check that the client lines the nodes' applications got are every line,
    in order, none missing, where a line may be handed again only in a
    short run where the session moved: those a node had handed to its
    application and not yet written to Redis when the client resumed
    elsewhere.

    @return: how many were handed again.
    """
    once = list(dict.fromkeys(got))
    assert once == numbered(b"c"), "server: " + first_difference(once, numbered(b"c"))
    repeated = len(got) - len(once)
    assert repeated <= 100, repeated
    return repeated


def test_a_killed_node_loses_nothing_redis_kept(redis, tmp_path, stopping, figure):
    """Redis paused past its link timeout, then the node that holds the
    session killed (SIGKILL): the client resumes on the other node; every
    server line reaches the client once, in order, and every client line
    reaches the server's application, in order, nothing lost (the last
    few the killed node had handed to its application but not yet
    recorded may be handed again)."""
    record, nodes, proxy, received, errors, resumed = two_nodes_and_a_client(
        redis, tmp_path, stopping)
    time.sleep(0.5)
    redis.process.send_signal(signal.SIGSTOP)
    time.sleep(1.0)
    redis.process.send_signal(signal.SIGCONT)
    # The node's writes went through once Redis was back: what its
    # application had then is in Redis, and only what came since may be
    # handed again.
    caught = c_lines(record)
    wait_for(lambda: recorded_in_redis(redis) >= caught, timeout=10,
             what="the node's writes after Redis came back")
    before = resumed()
    proxy.command(f"target {nodes['b'].linePort}")
    nodes["a"].process.send_signal(signal.SIGKILL)
    wait_for(lambda: resumed() > before, timeout=20, what="the session resumed on b")
    wait_for(lambda: len(lines_of(received)) >= COUNT and c_lines(record) >= COUNT,
             timeout=60, interval=0.05, what="every line")
    time.sleep(0.5)
    got = lines_of(received)
    assert got == numbered(b"s"), "client: " + first_difference(got, numbered(b"s"))
    repeated = handed_again(lines_of(record))
    assert "lost the session" not in errors.read_text()
    assert "writing sessions to Redis failed" in nodes["a"].log()
    assert "Traceback" not in nodes["b"].log(), nodes["b"].log()
    figure("sessions in Redis, a node killed after Redis paused 1 s: client lines "
           "handed to the application again", repeated)


def c_lines(record):
    return len(set(lines_of(record)))


def test_a_session_of_a_dead_node_expires_explicitly(redis, tmp_path, stopping):
    """A session whose node died lives its window from when the others
    find the node dead; a client back after that is told 'expired'."""
    record = tmp_path / "record"
    options = ("--redis", redis.url, "--echo", "--resume-window", "1")
    nodes = {name: SessionApp(record, *options, "--node-id", name, name=name)
             for name in ("a", "b")}
    for app in nodes.values():
        stopping(app)
    proxy = FaultProxy(nodes["a"].linePort)
    stopping(proxy)
    client, received, errors = quick_client(proxy, tmp_path, stopping)
    client.stdin.write(b"c1\n")
    client.stdin.flush()
    wait_for(lambda: lines_of(received) == [b"s1"], what="the first echo")
    nodes["a"].process.send_signal(signal.SIGKILL)
    # Node timeout (1 s), then the window (1 s), while the client knocks
    # on the dead node's door.
    time.sleep(3.5)
    proxy.command(f"target {nodes['b'].linePort}")
    wait_for(lambda: "lost the session (expired)" in errors.read_text(), timeout=10,
             what="the client told its session expired")
    client.stdin.write(b"c2\n")
    client.stdin.flush()
    wait_for(lambda: lines_of(received) == [b"s1", b"s2"], what="the next echo, in a new session")


def test_workers_on_redis_resume_a_session_whichever_gets_the_client(redis, tmp_path, stopping):
    """twistd heartbeat --workers 2 --redis: a client cut again and again
    comes back to either worker, which resumes its session; every line
    is echoed once, in order."""
    from .processes import Server, free_port

    port = free_port()
    server = Server("--workers", "2", "--redis", redis.url, "--node-id", "w",
                    "--interval", "0.2", "--timeout", "3", "--pong-timeout", "0.2",
                    description=f"tcp:{port}:interface=127.0.0.1")
    stopping(server)
    wait_for(lambda: server.log().count("starting on") >= 2, what="both workers")
    proxy = FaultProxy(port)
    stopping(proxy)
    client, received, errors = quick_client(proxy, tmp_path, stopping)
    resumed = count_in(errors, "resumed the session")
    count = 1500
    feed(client.stdin, count, 500)
    for _ in range(6):
        time.sleep(0.3)
        before = resumed()
        proxy.command("reset")
        wait_for(lambda: resumed() > before, timeout=20, what="the session resumed")
    expected = [b"c%d" % n for n in range(1, count + 1)]
    wait_for(lambda: len(lines_of(received)) >= count, timeout=60, what="every echo")
    time.sleep(0.5)
    got = lines_of(received)
    assert got == expected, first_difference(got, expected)
    assert "lost the session" not in errors.read_text()
    assert "sessions kept 120s in Redis" in server.log()
    assert re.findall(r"worker \d: .*resumed session", server.log())


def test_a_session_the_nodes_next_life_took_is_not_released_as_the_old_ones(redis):
    """A node that restarts under its id serves at once, while its previous
    life's records are still being removed: a session one of its clients
    resumed on it meanwhile stays its own (its writes go through), while
    the previous life's other sessions get their window."""
    prefix, sid, other = "heartbeat:", "A" * 22, "B" * 22

    def run(script, *argv):
        return redis.lines("EVAL", script, "0", *map(str, argv))

    run(BEGIN, prefix, "x", "one", 10, 2, 1, "epoch")
    for session in (sid, other):
        assert run(COMMIT, prefix, "x#one", "x", 3600,
                   session, 1, 0, 0, 0, 0, "120", "") == ["1"]
    assert run(UNREGISTER, prefix, "x", "one") == ["1"]
    assert run(BEGIN, prefix, "x", "two", 10, 2, 1, "epoch")[0] == "reaping"
    assert run(TAKE, prefix, sid, "x#two", "x", "", 0, "heartbeat:0:node:", "", 3600)[0] == "taken"
    run(REAP, prefix, "heartbeat:0:presence", "x", 1000)
    assert redis.cli("HGET", prefix + "session:" + sid, "owner") == "x#two"
    assert redis.cli("HGET", prefix + "session:" + other, "owner") == ""
    assert redis.cli("HEXISTS", prefix + "session:" + other, "expires") == "1"
    assert run(COMMIT, prefix, "x#two", "x", 3600, sid, 2, 0, 0, 0, 1, "120", "", "Nline") == ["1"]
    assert redis.cli("HEXISTS", prefix + "dying", "x") == "0"
