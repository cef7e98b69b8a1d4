"""
Who is who across the cluster: node ids, names, and the cluster-wide key
of a connection, which is also the presence name of a connection that
gave itself none.

A name is whatever a connection goes by in presence, however it came (a
client's handshake; later, a verified token's subject): L{check_name}
is the one rule for all of them.

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
import unicodedata
from typing import Callable, NamedTuple, Optional

# A node id: printable ASCII without spaces and without "#", which starts
# the rest of a connection key.
_NODE_ID = re.compile(r"[!-\"$-~]{1,128}\Z")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
INCARNATION_LENGTH = 6
# A key: a node id, "#", an incarnation, ".", a number.
_KEY = re.compile(r"([!-\"$-~]{1,128})#([0-9a-z]{1,16})\.(0|[1-9][0-9]{0,19})\Z")

# The longest name, in bytes of UTF-8.
MAX_NAME = 256
# Unicode's categories of characters a name may not hold: controls
# (newlines, tabs), invisible formatting (zero-width spaces, direction
# overrides, which make one name look like another), surrogates, and
# every kind of space and separator.
_NOT_IN_NAMES = {"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"}
_WHY = {
    "Cc": "control characters",
    "Cf": "invisible formatting characters",
    "Cs": "surrogates",
    "Zs": "spaces",
    "Zl": "spaces or line separators",
    "Zp": "spaces or paragraph separators",
}


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
    never is: names hold no C{#}).
    """
    found = _KEY.match(key)
    if found is None:
        return None
    node, incarnation, number = found.groups()
    return ConnectionKey(node, incarnation, int(number))


def check_name(name: str) -> str:
    """
    The rule for every name in presence: 1 to L{MAX_NAME} bytes of UTF-8
    text, in any script, without spaces, control or invisible characters
    (so that no name can break a line, a frame or a log line, nor look like
    another), and without C{#} (so that no name can pass for a
    connection's key).  Names are compared as they are: C{José} written
    with one code point or with two are two names.

    @return: C{name}.
    @raise ValueError: C{name} breaks the rule; the message says how.
    """
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"a name must be UTF-8 text, not {name!r}")
    if not 0 < size <= MAX_NAME:
        raise ValueError(f"a name is 1 to {MAX_NAME} bytes of UTF-8, not {size}")
    for character in name:
        category = unicodedata.category(character)
        if category in _NOT_IN_NAMES:
            raise ValueError(
                f"a name holds no {_WHY[category]}: not {name!r}"
            )
    if "#" in name:
        raise ValueError(f"'#' is kept for connection keys: not {name!r}")
    return name


def is_present_name(name: str) -> bool:
    """
    Whether C{name} could be in presence at all: a name the rule allows,
    or a connection's key.  Anything else is no one's, and never reaches
    Redis (where a space or a newline in it would break the frames that
    carry names).
    """
    if parse_connection_key(name) is not None:
        return True
    try:
        check_name(name)
    except ValueError:
        return False
    return True
