"""
C{/presence.json}: the cluster as presence knows it.

Without a query: every live node (id, connections, seconds since it was
last heard, alive), and a page of present names, each with its
connections (node, connection key, since); C{?after=NAME} gives the next
page, C{?limit=N} its size (100, at most 1000).  With C{?name=NAME}: where
that name is connected, with each connection's round trip, transport and
peer as its node knows them.  While the cluster cannot be reached: 503,
with the reason.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from .._cluster.interface import ClusterUnavailable

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def node_row(node: Any) -> Dict[str, Any]:
    """
    One node of the cluster, for the page and C{/presence.json}.
    """
    return {
        "node": node.node,
        "connections": node.connections,
        "last_heard": node.lastHeard,
        "alive": node.alive,
    }


class PresenceResource(Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, cluster) -> None:
        super().__init__()
        self._cluster = cluster

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache")
        args = request.args
        name = _arg(args, b"name")
        if name is not None:
            d = self._one(name)
        else:
            try:
                limit = min(MAX_LIMIT, max(1, int(_arg(args, b"limit") or DEFAULT_LIMIT)))
            except ValueError:
                request.setResponseCode(400)
                return b'{"error": "limit must be a number"}\n'
            d = self._page(_arg(args, b"after"), limit)
        finished: List[bool] = []
        request.notifyFinish().addBoth(finished.append)

        def answer(body: Dict[str, Any]) -> None:
            if not finished:
                request.write(json.dumps(body).encode())
                request.finish()

        def failed(failure) -> None:
            if not failure.check(ClusterUnavailable):
                self.log.failure("/presence.json failed", failure)
            if not finished:
                request.setResponseCode(503)
                request.write(json.dumps({"error": failure.getErrorMessage()}).encode())
                request.finish()

        d.addCallbacks(answer, failed)
        return NOT_DONE_YET

    def _one(self, name: str) -> Deferred:
        return self._cluster.inspect(name).addCallback(
            lambda connections: {"name": name, "online": bool(connections),
                                 "connections": connections}
        )

    def _page(self, after, limit: int) -> Deferred:
        cluster = self._cluster

        def detailed(names: List[str]) -> Deferred:
            return gatherResults(
                [cluster.connectionsOf(name) for name in names], consumeErrors=True
            ).addCallback(lambda lists: (names, lists))

        def body(found, nodes) -> Dict[str, Any]:
            names, lists = found
            return {
                "node": cluster.nodeId,
                "up": cluster.up,
                "nodes": [node_row(node) for node in nodes],
                "names": [
                    {"name": name, "connections": [c._asdict() for c in connections]}
                    for name, connections in zip(names, lists)
                ],
                "next": names[-1] if len(names) == limit else None,
            }

        return gatherResults(
            [cluster.onlineNames(after, limit).addCallback(detailed), cluster.nodes()],
            consumeErrors=True,
        ).addCallback(lambda results: body(*results)).addErrback(_first)


def _first(failure):
    """
    The failure inside a L{gatherResults}' failure, however deeply nested:
    a page's questions are gathered within a gathering.
    """
    while failure.check(FirstError):
        failure = failure.value.subFailure
    return failure


def _arg(args, key: bytes):
    values = args.get(key)
    return values[0].decode("utf-8", "replace") if values else None
