"""
Removing the records of retired nodes (found dead, or stopped), a chunk
at a time (see L{heartbeat._cluster.scripts}): each chunk is one short
script, and the next goes when the last is answered, so that every other
command of the cluster runs in between.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from .link import RedisLink
from .scripts import REAP, REAP_CHUNK, Schema


def reap(link: RedisLink, schema: Schema, wanted: str = "") -> Deferred:
    """
    Remove retired nodes' records, each with its leave, until none is left;
    or, given C{wanted}, until none of that node's is left.

    @return: a L{Deferred} firing once done, or failing as the link's
        commands do (the nodes that beat carry on from where it stopped).
    """

    def step() -> Deferred:
        return link.script(
            REAP, [], [schema.prefix, schema.presenceChannel, wanted, REAP_CHUNK]
        ).addCallback(done)

    def done(reply) -> object:
        pending, wantedLeft = (int(n) for n in reply)
        if wantedLeft if wanted else pending:
            return step()
        return None

    return step()
