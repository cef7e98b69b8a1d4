"""
Who is who across the cluster: node ids, and the cluster-wide key of a
connection, which is also the presence name of a connection that gave
itself none.

A connection's key is C{NODE#INCARNATION.NUMBER}: the node's id, a token
drawn when the node's process starts, and the connection's number on that
node (C{heartbeatConnectionId}).  Node ids are unique among the live nodes;
the incarnation tells a restarted node (the same C{--node-id}, a worker
restarted by its supervisor) from its previous life, whose keys may still
be in use elsewhere; the number never repeats within one incarnation.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Callable, NamedTuple, Optional

# A node id: printable ASCII without spaces and without "#", which starts
# the rest of a connection key.
_NODE_ID = re.compile(r"[!-\"$-~]{1,128}\Z")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
INCARNATION_LENGTH = 6


def default_node_id() -> str:
    """
    C{hostname:pid}: readable, and unique among the live processes of a
    cluster whose machines have distinct names.
    """
    return f"{socket.gethostname()}:{os.getpid()}"


def check_node_id(node: str) -> str:
    """
    @raise ValueError: C{node} cannot be a node id.
    """
    if not _NODE_ID.match(node):
        raise ValueError(
            "a node id is 1 to 128 printable ASCII characters, without "
            f"spaces or '#': not {node!r}"
        )
    return node


def new_incarnation(randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """
    A token that tells this life of a node from its others.
    """
    return "".join(
        _ALPHABET[byte % len(_ALPHABET)] for byte in randbytes(INCARNATION_LENGTH)
    )


def connection_key(node: str, incarnation: str, number: int) -> str:
    return f"{node}#{incarnation}.{number}"


class ConnectionKey(NamedTuple):
    node: str
    incarnation: str
    number: int


def parse_connection_key(key: str) -> Optional[ConnectionKey]:
    """
    The parts of a connection key, or C{None} if C{key} is not one (a name
    a client gave itself never is: names with C{#} are not granted).
    """
    node, hash_, rest = key.rpartition("#")
    incarnation, dot, number = rest.partition(".")
    if not (hash_ and node and dot and incarnation and number.isdigit()):
        return None
    if number.startswith("0") and number != "0":
        return None
    return ConnectionKey(node, incarnation, int(number))


def may_be_a_name(name: str) -> bool:
    """
    Whether a client may take C{name}: not one that could be read as a
    connection key, which would let it pass for another connection.
    """
    return "#" not in name
