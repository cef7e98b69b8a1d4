"""
The browser files in C{heartbeat/web/}, served from memory by the
WebSocket and status ports: no CDN, nothing fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from twisted.web.resource import Resource

WEB_ROOT = Path(__file__).parent.parent / "web"

_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}


class Asset(Resource):
    """
    One file of C{heartbeat/web/}, read once.

    @param crossOrigin: let pages of any origin import it (the client
        module is meant to be imported by the application's own pages).
    """

    isLeaf = True

    def __init__(self, name: str, crossOrigin: bool = False) -> None:
        super().__init__()
        path = WEB_ROOT / name
        self._data = path.read_bytes()
        self._type = _TYPES[path.suffix]
        self._crossOrigin = crossOrigin

    def render_GET(self, request) -> bytes:
        request.setHeader(b"content-type", self._type)
        request.setHeader(b"cache-control", b"no-cache")
        if self._crossOrigin:
            request.setHeader(b"access-control-allow-origin", b"*")
        return self._data
