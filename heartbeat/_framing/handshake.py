"""
The client handshake: the one line through which a client asks for
capabilities (a name, resuming, the server's timing), and the server's
answer.

A client that wants any of them sends, as its first line (after C{auth},
where the server asks for one)::

    heartbeat/1 name=alice

and the server answers, before anything else it sends::

    heartbeat/1 id=7 interval=25 timeout=90 pong-timeout=5 max-length=65536 name=alice

Both are the version C{heartbeat/1} followed by fields, each C{key} or
C{key=value}, separated by single spaces.  A key is lower-case letters,
digits and C{-}; a value is text, written on the line as printable ASCII
without spaces, in which C{%} and two hex digits stand for one byte of its
UTF-8 (as in a URL): C{name=Jos%C3%A9} is José, C{name=50%25} is 50%.
Each side ignores the keys it does not know, so that a capability can be
added without a new version, and the server answers only the fields it
granted.  A peer that never sends the line is served exactly as before.

Over WebSocket a client that offers the subprotocol C{heartbeat.v1}
sends the same fields as a JSON control message, C{{"type":"hello",
...}}, as its first message (after C{auth}), and the server answers with
its own hello carrying the answer's fields; each key is written in
camelCase there (C{maxLength} for C{max-length}), and each value as the
JSON string or number it is, not percent-encoded.
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

PREFIX = b"heartbeat/"

# The WebSocket subprotocol by which a client says it will send its hello.
SUBPROTOCOL = "heartbeat.v1"

# The version this side speaks; a client asking for a later one is
# answered in this one.
VERSION = 1

# Bounds that keep a hostile line cheap to refuse.  A value is at most 256
# bytes of text, each of which may take three characters on the line.
MAX_FIELDS = 32
MAX_KEY = 32
MAX_VALUE = 3 * 256

_KEY = re.compile(rb"[a-z][a-z0-9-]*\Z")
_VALUE_BYTES = bytes(range(0x21, 0x7F))
# What a value writes as itself: on the line, printable ASCII but "%",
# which starts an escape; from JSON, all of ASCII but "%", so that a space
# or a control character breaks the grammar there as it does on a line.
_LINE_PLAIN = _VALUE_BYTES.replace(b"%", b"")
_JSON_PLAIN = bytes(range(0x80)).replace(b"%", b"")
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


class HandshakeError(ValueError):
    """
    A line began as a handshake but breaks its grammar; the message says
    how, for the log (the peer is told C{error bad handshake}).
    """


Value = Optional[str]


class Handshake:
    """
    The fields of a handshake line, in the order they came.

    @ivar version: the version the sender speaks.
    @ivar fields: each key, with its value or C{None} for a bare key.
    """

    __slots__ = ("version", "fields")

    def __init__(self, version: int, fields: Mapping[str, Value]) -> None:
        self.version = version
        self.fields: Dict[str, Value] = dict(fields)

    def __repr__(self) -> str:
        return f"<Handshake {format_handshake(self.fields).decode()}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Handshake)
            and (self.version, self.fields) == (other.version, other.fields)
        )

    def get(self, key: str, default: Value = None) -> Value:
        return self.fields.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def number(self, key: str) -> Optional[float]:
        """
        The field C{key} read as a non-negative number of seconds or bytes,
        or C{None} when it is absent or not such a number.
        """
        value = self.fields.get(key)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return number if 0 <= number < float("inf") else None


def is_handshake(line: bytes) -> bool:
    """
    Whether C{line} is meant as a handshake (it may still be malformed).
    """
    return line.startswith(PREFIX)


def parse_handshake(line: bytes) -> Handshake:
    """
    Read a handshake line, without its terminator.

    @raise HandshakeError: it breaks the grammar.
    """
    if not line.startswith(PREFIX):
        raise HandshakeError("not a handshake")
    head, *words = line.split(b" ")
    version = head[len(PREFIX) :]
    if not version.isdigit() or len(version) > 4 or version.startswith(b"0"):
        raise HandshakeError(f"bad version {version[:8]!r}")
    if len(words) > MAX_FIELDS:
        raise HandshakeError(f"more than {MAX_FIELDS} fields")
    return Handshake(int(version), _fields(words))


def _fields(words: Iterable[bytes]) -> Dict[str, Value]:
    fields: Dict[str, Value] = {}
    for word in words:
        key, equals, value = word.partition(b"=")
        if not key or len(key) > MAX_KEY or _KEY.match(key) is None:
            raise HandshakeError(f"bad field {word[:MAX_KEY]!r}")
        if equals and not (
            0 < len(value) <= MAX_VALUE and not value.translate(None, _VALUE_BYTES)
        ):
            raise HandshakeError(f"bad value for {key.decode()}")
        name = key.decode("ascii")
        if name in fields:
            raise HandshakeError(f"{name} given twice")
        fields[name] = _unquote(value, name) if equals else None
    return fields


def _quote(text: str, plain: bytes, key: str) -> bytes:
    """
    C{text} as the grammar carries it: its UTF-8, each byte that is not in
    C{plain} written C{%XX}.
    """
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise HandshakeError(f"bad value for {key}: not UTF-8 text")
    if not raw.translate(None, plain):
        return raw
    return b"".join(
        raw[i : i + 1] if raw[i] in plain else b"%%%02X" % raw[i]
        for i in range(len(raw))
    )


def _unquote(value: bytes, key: str) -> str:
    if b"%" not in value:
        return value.decode("ascii")
    if value.count(b"%") != len(_ESCAPE.findall(value)):
        raise HandshakeError(f"bad value for {key}: '%' starts no escape")
    try:
        return _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), value).decode("utf-8")
    except UnicodeDecodeError:
        raise HandshakeError(f"bad value for {key}: not UTF-8")


def handshake_from_json(message: Mapping[str, object]) -> Handshake:
    """
    The handshake a WebSocket client sent as C{{"type":"hello", ...}}: the
    same fields as members, strings, numbers or C{true} for a bare key.

    @raise HandshakeError: a member breaks the line grammar.
    """
    words = []
    for member, value in message.items():
        if member in ("type", "v"):
            continue
        key = _kebab(member)
        # A member name beyond ASCII is no key: "?" breaks the grammar.
        word = key.encode("ascii", "replace")
        if value is True:
            words.append(word)
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = value if isinstance(value, str) else _number(value)
            words.append(word + b"=" + _quote(text, _JSON_PLAIN, key))
        elif value is None or value is False:
            continue
        else:
            raise HandshakeError(f"bad value for {key}")
    if len(words) > MAX_FIELDS:
        raise HandshakeError(f"more than {MAX_FIELDS} fields")
    version = message.get("v", VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise HandshakeError(f"bad version {version!r}")
    return Handshake(version, _fields(words))


def _kebab(member: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in member)


def json_fields(fields: Mapping[str, object]) -> Dict[str, object]:
    """
    Handshake fields as the members of a WebSocket hello: camelCase keys,
    C{true} for a bare key.
    """
    members: Dict[str, object] = {}
    for key, value in fields.items():
        head, *rest = key.split("-")
        members[head + "".join(word.capitalize() for word in rest)] = (
            True if value is None else value
        )
    return members


def _number(value: Union[int, float]) -> str:
    return "%g" % (value,) if isinstance(value, float) else str(value)


def format_handshake(
    fields: Mapping[str, Union[Value, int, float]], version: int = VERSION
) -> bytes:
    """
    The handshake line carrying C{fields}, without its terminator; a field
    whose value is C{None} is a bare key, a number is written plainly, and
    text is percent-encoded where it must be.
    """
    words = [PREFIX + b"%d" % (version,)]
    for key, value in fields.items():
        if value is None:
            words.append(key.encode("ascii"))
        else:
            text = value if isinstance(value, str) else _number(value)
            words.append(key.encode("ascii") + b"=" + _quote(text, _LINE_PLAIN, key))
    return b" ".join(words)


def seconds(value: Optional[float]) -> Union[int, float]:
    """
    A timing setting as the answer carries it: C{0} for "never".
    """
    if not value:
        return 0
    return int(value) if float(value).is_integer() else value


def timing_fields(
    interval: Optional[float],
    timeout: Optional[float],
    pongTimeout: Optional[float],
    maxLength: Optional[int],
) -> Tuple[Tuple[str, Union[int, float]], ...]:
    """
    The server's timing and line limit, as its answer carries them.
    """
    return (
        ("interval", seconds(interval)),
        ("timeout", seconds(timeout)),
        ("pong-timeout", seconds(pongTimeout)),
        ("max-length", maxLength or 0),
    )
