"""
Lines across nodes, over Redis's publish and subscribe.

A broadcast is published once, on the channel every node listens to; a
line for a name (or a connection's key, the name of a connection without
one) is published once to each other node that holds it, on that node's
own channel (a script finds them from the name's records), so a node that
holds no connection of the name never sees the line.  Each
node publishes over its one command connection: Redis hands its lines on
in the order it sent them.

Delivery is at most once: a node that is not subscribed at the moment a
line is published (Redis or the node's link is down, or comes back just
after) never gets it.  The sender's own connections get every line at
once, without Redis.

On the broadcast channel a message is C{FLAG NODE SP LINE}; on a node's
channel C{S FLAG NAME SP LINE} (a line for a name), C{D NAME} (close the
name's connections), C{Q NODE SP ID SP NAME} (what do you know of NAME's
connections? answer to NODE) or C{A NODE SP ID SP JSON} (the answer).
C{FLAG} is how a WebSocket connection gets it: C{N} as the bytes allow,
C{T} as text, C{B} as binary.
"""

from __future__ import annotations

import json
from itertools import count
from typing import Any, Callable, Dict, List, Optional, Set

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .identity import is_present_name, parse_connection_key
from .interface import ClusterUnavailable, check_line
from .link import RedisLink
from .scripts import ROUTE, Schema
from .throttle import ThrottledWarning

_FLAGS = {None: b"N", False: b"T", True: b"B"}
_BINARY = {flag: isBinary for isBinary, flag in _FLAGS.items()}


class Router:
    """
    Sends this node's lines to the others, and delivers theirs.
    """

    log = Logger()

    def __init__(self, cluster: Any, link: RedisLink, schema: Schema) -> None:
        self.cluster = cluster
        self.link = link
        self.schema = schema
        self._node = cluster.nodeId.encode()
        # Other kinds of node message, by their first byte, for the layers
        # above (a session taken over by another node).
        self.handlers: Dict[bytes, Callable[[bytes], None]] = {}
        self._inquiries: Dict[bytes, "_Inquiry"] = {}
        self._numbers = count(1)
        self._warn = ThrottledWarning(
            self.log,
            "cross-node {what} failed: {why} ({unlogged} more failed since "
            "the last such line)",
            cluster.clock,
        )
        self._dropped = ThrottledWarning(
            self.log,
            "a line from {node} holds a newline, which line peers cannot "
            "receive whole: not delivered ({unlogged} more since the last "
            "such line)",
            cluster.clock,
        )

    # Sending

    def broadcast(self, line: bytes, exclude: object, isBinary: Optional[bool]) -> Deferred:
        local = self.cluster.broadcastLocally(check_line(line), exclude, isBinary)
        message = _FLAGS[isBinary] + self._node + b" " + line
        d = self.link.call("publish", self.schema.broadcastChannel, message)
        return self._counted(d, "broadcast").addCallback(lambda _: local)

    def sendTo(self, name: str, line: bytes, isBinary: Optional[bool]) -> Deferred:
        local = self.cluster.deliverLocally(name, check_line(line), isBinary)
        return self._route(
            name, b"S" + _FLAGS[isBinary], b" " + line, "line for a name"
        ).addCallback(lambda remote: local + remote)

    def disconnect(self, name: str) -> Deferred:
        local = self.cluster.disconnectLocally(name)
        return self._route(name, b"D", b"", "disconnect").addCallback(
            lambda remote: local + remote
        )

    def _route(self, name: str, kind: bytes, rest: bytes, what: str) -> Deferred:
        """
        Publish C{kind NAME rest} to the other nodes that hold C{name}.
        """
        if not is_present_name(name):
            # No one's: and a space or a newline in it would break the
            # message's frame on the nodes that read it.
            return succeed(0)
        key = parse_connection_key(name)
        if key is not None and key.node == self.cluster.nodeId:
            # A connection of this node: delivered already, if it is here.
            return succeed(0)
        d = self.link.script(
            ROUTE,
            [self.schema.name(name)],
            [self.cluster.nodeId, self.schema.nodeChannelPrefix,
             kind + name.encode() + rest],
        )
        return self._counted(d, what)

    def _counted(self, d: Deferred, what: str) -> Deferred:
        cluster = self.cluster

        def sent(result):
            cluster.messagesSent += 1
            return result

        def failed(failure: Failure) -> Failure:
            cluster.messagesFailed += 1
            self._warn(what=what, why=failure.getErrorMessage())
            if failure.check(ClusterUnavailable):
                return failure
            return Failure(ClusterUnavailable(failure.getErrorMessage()))

        return d.addCallbacks(sent, failed)

    def inspect(self, name: str, timeout: float) -> Deferred:
        cluster = self.cluster
        known = {row["connection"]: row for row in map(
            cluster.describe, cluster.localMembers(name))}

        def ask(connections) -> Deferred:
            others = {c.node for c in connections} - {cluster.nodeId}
            if not others:
                return succeed([])
            number = b"%d" % next(self._numbers)
            inquiry = self._inquiries[number] = _Inquiry(others)
            inquiry.call = cluster.clock.callLater(timeout, inquiry.finish)
            question = b" ".join([self._node, number, name.encode()])
            for node in others:
                # A node that cannot be asked (Redis is down or hangs) has
                # nothing to add to what presence knows.
                self.link.call(
                    "publish", self.schema.nodeChannel(node), b"Q" + question
                ).addErrback(lambda failure, node=node: inquiry.answer(node, []))

            def done(answers):
                del self._inquiries[number]
                return answers

            return inquiry.deferred.addBoth(done)

        def merged(answers, connections):
            for row in answers:
                known.setdefault(row.get("connection"), row)
            return [
                known.get(c.connection)
                or {"node": c.node, "connection": c.connection, "since": c.since,
                    "verified": c.verified}
                for c in connections
            ]

        def answered(connections):
            return ask(connections).addCallback(merged, connections)

        return cluster.connectionsOf(name).addCallback(answered)

    def stop(self) -> None:
        """
        The node is stopping: every search under way is answered now with
        what it has.
        """
        for inquiry in list(self._inquiries.values()):
            inquiry.finish()

    # Receiving

    def broadcastReceived(self, message: bytes) -> None:
        flag = message[:1]
        node, _, line = message[1:].partition(b" ")
        if node == self._node or flag not in _BINARY:
            return
        self.cluster.messagesReceived += 1
        if self._deliverable(line, node):
            self.cluster.broadcastLocally(line, None, _BINARY[flag])

    def _deliverable(self, line: bytes, node: bytes) -> bool:
        # Every node refuses such a line before publishing it; one that did
        # not (another version) must not reach the connections here.
        if b"\n" not in line:
            return True
        self._dropped(node=node.decode("ascii", "replace"))
        return False

    def nodeMessageReceived(self, message: bytes) -> None:
        kind = message[:1]
        if kind == b"S":
            flag = message[1:2]
            name, _, line = message[2:].partition(b" ")
            if flag in _BINARY:
                self.cluster.messagesReceived += 1
                if self._deliverable(line, b"another node"):
                    self.cluster.deliverLocally(name.decode("utf-8", "replace"), line,
                                                _BINARY[flag])
        elif kind == b"D":
            self.cluster.messagesReceived += 1
            self.cluster.disconnectLocally(message[1:].decode("utf-8", "replace"))
        elif kind == b"Q":
            node, number, name = (message[1:].split(b" ", 2) + [b"", b""])[:3]
            rows = [self.cluster.describe(member) for member in
                    self.cluster.localMembers(name.decode("utf-8", "replace"))]
            answer = b" ".join([b"A" + self._node, number, json.dumps(rows).encode()])
            self.link.call("publish", self.schema.nodeChannel(node.decode()), answer
                           ).addErrback(lambda failure: None)
        elif kind in self.handlers:
            self.handlers[kind](message[1:])
        elif kind == b"A":
            node, number, rows = (message[1:].split(b" ", 2) + [b"", b""])[:3]
            inquiry = self._inquiries.get(number)
            if inquiry is not None:
                try:
                    answer = json.loads(rows)
                except ValueError:
                    answer = []
                inquiry.answer(node.decode("ascii", "replace"), answer)


class _Inquiry:
    """
    A question to the nodes that hold a name: done when each has answered,
    or when its time is up.
    """

    def __init__(self, nodes: Set[str]) -> None:
        self.waiting = set(nodes)
        self.answers: List[dict] = []
        self.deferred: Deferred = Deferred()
        self.call: Optional[IDelayedCall] = None

    def answer(self, node: str, rows: list) -> None:
        if node in self.waiting:
            self.waiting.discard(node)
            self.answers.extend(row for row in rows if isinstance(row, dict))
            if not self.waiting:
                self.finish()

    def finish(self) -> None:
        call, self.call = self.call, None
        if call is not None and call.active():
            call.cancel()
        if not self.deferred.called:
            self.deferred.callback(self.answers)
