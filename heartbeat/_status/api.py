"""
The push API on C{--api-port}: backends in any language send to names,
broadcast, ask presence and disconnect names over HTTP, cluster-wide.

Every request carries C{Authorization: Bearer <token>}, compared in
constant time; without it nothing happens (C{401}).  A request's body is
the line itself, as bytes: over the server's line limit it is refused with
C{413}, holding a newline with C{400}, and neither reaches anyone.  Every
answer is JSON; an error is C{{"error": CODE, "message": TEXT}}.  The API
is described once, in C{heartbeat/web/openapi.json}, which it serves at
C{/openapi.json}.

It calls the server factory's cluster-wide API (C{sendTo}, C{broadcast},
C{connectionsOf}, C{onlineCount}, C{onlineNames}, C{disconnect}), so that
what a backend does reaches every node, and a line for a name takes the
path every line for a name takes.
"""

from __future__ import annotations

import hmac
import json
import re
from io import BytesIO
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from .._cluster.interface import ClusterUnavailable
from .._cluster.throttle import ThrottledWarning
from .._server.assets import WEB_ROOT
from .presence import DEFAULT_LIMIT, MAX_LIMIT, _first

# The longest name the API takes, in characters: a name in presence is at
# most as many bytes (see heartbeat._cluster.identity.check_name).
MAX_NAME = 256
# What no name or key holds: spaces (of any kind) and control characters.
_NOT_A_NAME = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


class ApiError(Exception):
    """
    A request the API refuses: its status, code and message are the answer.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def parse_name(raw: bytes) -> str:
    """
    A name from a path segment, percent-decoded: see L{check_name}.
    """
    return check_name(unquote_to_bytes(raw))


def check_name(name: bytes) -> str:
    """
    A name as given, already decoded (Twisted decodes a query's values):
    1 to L{MAX_NAME} characters of UTF-8, without spaces or control
    characters (what the description's C{Name} allows).  One that no
    connection could have (see
    L{heartbeat._cluster.identity.is_present_name}) is taken, and reaches
    no one.

    @raise ApiError: it is not one.
    """
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if not 0 < len(text) <= MAX_NAME or _NOT_A_NAME.search(text):
        raise ApiError(
            400, "bad_name",
            f"a name is 1 to {MAX_NAME} characters of UTF-8 without spaces "
            "or control characters",
        )
    return text


class _ApiRequest(Request):
    """
    A request whose body is kept in memory up to the site's limit and
    dropped beyond it: a line can be no longer, and a backend that sends a
    gigabyte must not grow the server by as much.  Bodies are never read
    as forms.
    """

    _parsePOSTFormSubmission = False
    bodyTooLong = False

    def gotLength(self, length: Optional[int]) -> None:
        self.content = BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        if self.bodyTooLong:
            return
        if self.content.tell() + len(data) > self.channel.site.maxBody:
            self.bodyTooLong = True
            self.content = BytesIO()
        else:
            self.content.write(data)


class ApiSite(Site):
    """
    The API's site: bodies bounded by the server's line limit, and no
    access log (a backend's sends would fill the server's own log).

    @ivar maxBody: the longest body taken, in bytes.
    """

    requestFactory = _ApiRequest
    noisy = False

    def __init__(self, resource: "ApiResource", maxBody: int, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.maxBody = maxBody

    def log(self, request: Request) -> None:
        pass


Handler = Callable[[Request, Optional[str]], Deferred]


class ApiResource(Resource):
    """
    Every path of the API, routed here rather than by child resources, so
    that a name may hold any printable character (C{/} included, as
    C{%2F}) and every miss is answered in JSON.

    @ivar server: what the API drives: a L{HeartbeatServerFactory}, whose
        C{maxLineLength} bounds a line.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, server: Any, token: bytes, clock: Any) -> None:
        super().__init__()
        self.server = server
        self._token = token
        self._description = (WEB_ROOT / "openapi.json").read_bytes()
        self._warn = ThrottledWarning(
            self.log,
            "refused an API request from {peer}: {why} ({unlogged} more "
            "refused since the last such line)",
            clock,
        )

    def render(self, request: Request) -> Any:
        try:
            self._authorize(request)
            handler, name = self._route(request)
            d = handler(request, name)
        except ApiError as e:
            return _error(request, e)
        finished: List[bool] = []
        request.notifyFinish().addBoth(finished.append)

        def answer(body: Any) -> None:
            if not finished:
                request.write(_json(request, 200, body))
                request.finish()

        def failed(failure: Failure) -> None:
            if failure.check(ApiError):
                error = failure.value
            elif failure.check(ClusterUnavailable):
                error = ApiError(503, "cluster_unavailable", failure.getErrorMessage())
            else:
                self.log.failure("API request {path} failed", failure,
                                 path=request.path.decode("ascii", "replace"))
                error = ApiError(500, "internal", "the server failed; see its log")
            if not finished:
                request.write(_error(request, error))
                request.finish()

        d.addCallbacks(answer, failed)
        return NOT_DONE_YET

    def _authorize(self, request: Request) -> None:
        header = request.getHeader(b"authorization") or b""
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._token):
            peer = request.getClientAddress()
            self._warn(
                peer=getattr(peer, "host", str(peer)),
                why="no bearer token" if not header else "wrong bearer token",
            )
            request.setHeader(b"www-authenticate", b'Bearer realm="heartbeat"')
            raise ApiError(401, "unauthorized",
                           "every request needs 'Authorization: Bearer <token>'")

    def _route(self, request: Request) -> Tuple[Handler, Optional[str]]:
        parts = request.path[1:].split(b"/")
        name = None
        if len(parts) == 1:
            methods = self._fixed.get(parts[0])
        else:
            methods = self._named.get(parts[0]) if len(parts) == 2 else None
            if methods is not None:
                name = parts[1]
        if methods is None:
            raise ApiError(404, "not_found", "no such path; see /openapi.json")
        method = request.method.decode("ascii", "replace")
        if method not in methods:
            request.setHeader(b"allow", ", ".join(methods).encode())
            raise ApiError(405, "method_not_allowed", f"{method} is not allowed here")
        return getattr(self, methods[method]), None if name is None else parse_name(name)

    _fixed = {
        b"openapi.json": {"GET": "describe"},
        b"broadcast": {"POST": "broadcast"},
        b"presence": {"GET": "page"},
    }
    _named = {
        b"send": {"POST": "send"},
        b"presence": {"GET": "one"},
        b"connections": {"DELETE": "disconnect"},
    }

    # The operations

    def describe(self, request: Request, name: None) -> Deferred:
        return succeed(_Raw(self._description))

    def send(self, request: Request, name: str) -> Deferred:
        line, isBinary = self._line(request)
        return self.server.sendTo(name, line, isBinary).addCallback(
            lambda sent: {"sent": sent}
        )

    def broadcast(self, request: Request, name: None) -> Deferred:
        line, isBinary = self._line(request)
        return self.server.broadcast(line, None, isBinary).addCallback(
            lambda _: {"broadcast": True}
        )

    def one(self, request: Request, name: str) -> Deferred:
        return self.server.connectionsOf(name).addCallback(
            lambda connections: {
                "name": name,
                "online": bool(connections),
                "connections": [c._asdict() for c in connections],
            }
        )

    def page(self, request: Request, name: None) -> Deferred:
        after = request.args.get(b"after")
        limit = request.args.get(b"limit")
        after = None if after is None else check_name(after[0])
        if limit is None:
            count = DEFAULT_LIMIT
        elif limit[0].isdigit() and 1 <= int(limit[0]) <= MAX_LIMIT:
            count = int(limit[0])
        else:
            raise ApiError(400, "bad_limit", f"limit is a number from 1 to {MAX_LIMIT}")
        server = self.server

        def body(results) -> Dict[str, Any]:
            total, names = results
            return {
                "count": total,
                "names": names,
                "next": names[-1] if len(names) == count else None,
            }

        return gatherResults(
            [server.onlineCount(), server.onlineNames(after, count)],
            consumeErrors=True,
        ).addCallback(body).addErrback(_first)

    def disconnect(self, request: Request, name: str) -> Deferred:
        return self.server.disconnect(name).addCallback(
            lambda told: {"disconnected": told}
        )

    def _line(self, request: Request) -> Tuple[bytes, Optional[bool]]:
        """
        The request's body as a line, and how pages get it: as binary when
        the body says it is (C{application/octet-stream}), else as its
        bytes allow.

        @raise ApiError: it is too long, or holds a newline.
        """
        limit = self.server.maxLineLength
        line = request.content.read()
        if request.bodyTooLong or len(line) > limit:
            raise ApiError(413, "too_long", f"a line is at most {limit} bytes")
        if b"\n" in line:
            raise ApiError(400, "newline", "a line must not contain a newline (0x0A)")
        kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        return line, True if kind == b"application/octet-stream" else None


class _Raw(bytes):
    """
    An answer that is JSON already.
    """


def _json(request: Request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    if isinstance(body, _Raw):
        return body
    return json.dumps(body).encode() + b"\n"


def _error(request: Request, error: ApiError) -> bytes:
    return _json(request, error.status, {"error": error.code, "message": str(error)})


def api_site(server: Any, token: bytes, clock: Any, idleTimeout: float = 60.0) -> ApiSite:
    """
    The site for C{--api-port}, driving C{server} (a
    L{HeartbeatServerFactory}) for backends that hold C{token}.
    """
    return ApiSite(
        ApiResource(server, token, clock),
        server.maxLineLength + 1,
        timeout=idleTimeout,
        reactor=clock,
    )
