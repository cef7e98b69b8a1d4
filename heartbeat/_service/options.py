"""
Command-line options shared by the server plugin and the client command,
validated up front so a bad value is one line naming the option.
"""

from __future__ import annotations

import math
import platform
import re
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Optional

from twisted.python import usage


def _number(options: usage.Options, name: str, kind=float, minimum=0):
    raw = options[name]
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or not math.isfinite(value) or value < minimum:
        what = "a whole number" if kind is int else "a number"
        raise usage.UsageError(f"--{name} must be {what} >= {minimum}, not {raw!r}")
    return value


def seconds_or_none(options: usage.Options, name: str) -> Optional[float]:
    """
    Read option C{name} as seconds; C{0} (disabled) becomes C{None}.
    """
    return _number(options, name) or None


def positive_int(options: usage.Options, name: str) -> int:
    return _number(options, name, int, 1)


def positive_float(options: usage.Options, name: str) -> float:
    value = _number(options, name)
    if value == 0:
        raise usage.UsageError(f"--{name} must be greater than 0")
    return value


def read_token(options: usage.Options, name: str) -> Optional[bytes]:
    """
    The token in the file named by option C{name}, surrounding whitespace
    stripped; C{None} when the option was not given.
    """
    path = options[name]
    if path is None:
        return None
    try:
        return token_from_file(path)
    except ValueError as e:
        raise usage.UsageError(f"--{name}: {e}")


def token_from_file(path: str) -> bytes:
    """
    The token in the file at C{path}, surrounding whitespace stripped.

    @raise ValueError: the file cannot be read, or holds no one-line token.
    """
    try:
        token = Path(path).read_bytes().strip()
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e.strerror}")
    if not token or any(byte in token for byte in b"\r\n"):
        raise ValueError(f"{path!r} must hold one non-empty line (the token)")
    return token


def _recorded(name: str):
    """
    An option handler that takes the value as usual and records that the
    option was given, so that a client can tell its own settings from the
    defaults it would rather take from the server.  It has no docstring:
    the option keeps the help of its C{optParameters} entry.
    """

    def handler(self: "HeartbeatOptions", value: str) -> None:
        self[name] = value
        self.given.add(name)

    return handler


class HeartbeatOptions(usage.Options):
    """
    The heartbeat timing and framing options, for both ends.

    After parsing, C{interval}, C{timeout} and C{pong-timeout} hold seconds
    or C{None} (disabled) and C{max-line-length} an int; L{given} names the
    ones that were given rather than left at their defaults.
    """

    optParameters = [
        [
            "interval",
            None,
            "25",
            "Ping a connection silent for this many seconds (0: never ping).",
        ],
        [
            "timeout",
            None,
            "90",
            "Close a connection silent for this many seconds; must be "
            "greater than --interval (0: never close).",
        ],
        [
            "pong-timeout",
            None,
            "5",
            "Close a peer that has answered a ping before once a ping stays "
            "unanswered, with nothing else heard, past its pong deadline: "
            "its measured round trip plus four times its variation, never "
            "less than this many seconds (0: only --timeout closes).",
        ],
        [
            "max-line-length",
            None,
            "65536",
            "Longest line accepted, in bytes, without its terminator.",
        ],
        [
            "auth-token-file",
            None,
            None,
            "File holding the shared secret token (surrounding whitespace "
            "is stripped); each connection must start with 'auth <token>'.",
        ],
    ]

    opt_interval = _recorded("interval")
    opt_timeout = _recorded("timeout")
    opt_pong_timeout = _recorded("pong-timeout")
    opt_max_line_length = _recorded("max-line-length")

    def __init__(self) -> None:
        super().__init__()
        self.given: set = set()

    def postOptions(self) -> None:
        self["interval"] = interval = seconds_or_none(self, "interval")
        self["timeout"] = timeout = seconds_or_none(self, "timeout")
        if interval and timeout and timeout <= interval:
            raise usage.UsageError(
                "--timeout must be greater than --interval "
                f"({timeout:g} <= {interval:g}): a peer must get a ping "
                "before it is declared dead"
            )
        self["pong-timeout"] = seconds_or_none(self, "pong-timeout")
        self["max-line-length"] = positive_int(self, "max-line-length")
        self["auth-token"] = read_token(self, "auth-token-file")


def version_line(program: str) -> str:
    """
    What C{--version} prints: the program's version, and those of Twisted
    and Python, which a bug report needs too.
    """
    from twisted import __version__ as twisted

    from .. import __version__

    return f"{program} {__version__} (Twisted {twisted}, Python {platform.python_version()})"


def server_description(port: str) -> str:
    """
    A bare port number means TCP on all interfaces; anything else is a
    Twisted server endpoint description (C{ssl:…}, C{unix:…}).
    """
    port = port.strip()
    return f"tcp:{port}" if port.isdigit() else port


def require_extra(option: str, module: str, extra: str) -> None:
    """
    Refuse C{--option} in one line when C{module} (from heartbeat's
    C{extra}) is not installed, saying how to install it here.
    """
    if find_spec(module) is None:
        raise usage.UsageError(
            f"--{option} needs {module} (the {extra} extra): "
            f"{sys.executable} -m pip install '{_requirement(extra, module)}'"
        )


def _requirement(extra: str, module: str) -> str:
    """
    What installs C{extra}'s dependency, as this installation's metadata
    names it (with its version).  Installing it alone works however
    heartbeat was installed: from an index, a clone or a wheel, editable
    or not.
    """
    from importlib import metadata

    try:
        requires = metadata.requires("heartbeat") or []
    except metadata.PackageNotFoundError:
        requires = []
    marker = re.compile(rf"""extra\s*==\s*["']{extra}["']""")
    for requirement in requires:
        spec, _, condition = requirement.partition(";")
        if marker.search(condition):
            return spec.strip()
    return module
