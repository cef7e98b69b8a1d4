"""
A backend's side of the push API, for the tests: HTTP calls with the
bearer token, and the API's port beside a test server.
"""

from __future__ import annotations

import json
import time
from typing import Optional, Tuple
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import Request, urlopen

import jwt

from .processes import accepting, free_port, wait_for

API_TOKEN = "an API token for the tests, long enough"


class Api:
    """
    The push API on 127.0.0.1:C{port}.
    """

    def __init__(self, port: int, token: str = API_TOKEN) -> None:
        self.port = port
        self.token = token

    def call(self, method: str, path: str, body: Optional[bytes] = None,
             token: Optional[str] = "", contentType: str = "text/plain") -> Tuple[int, dict]:
        """
        C{(status, JSON answer)} of one request; C{token=None} sends no
        Authorization header, the default sends the right one.
        """
        request = Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        token = self.token if token == "" else token
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        if body is not None:
            request.add_header("Content-Type", contentType)
        try:
            with urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except HTTPError as e:
            return e.code, json.loads(e.read())

    def send(self, name: str, line: bytes, **kwargs) -> Tuple[int, dict]:
        return self.call("POST", "/send/" + quote(name, safe=""), line, **kwargs)


def api_options(tmp_path, port: Optional[int] = None) -> Tuple[list, int]:
    """
    The options that give a test server its API on a free port (or
    C{port}), with the tests' bearer token in a file.
    """
    port = port or free_port()
    path = tmp_path / "api-token"
    path.write_text(API_TOKEN + "\n")
    return ["--api-port", f"tcp:{port}:interface=127.0.0.1",
            "--api-token-file", str(path)], port


def listening(port: int) -> None:
    wait_for(lambda: accepting(port), 20, what=f"port {port}")


def token_for(secret: bytes, name: str, lifetime: float = 600.0) -> bytes:
    """A token for C{name}, as a backend holding C{secret} mints it."""
    return jwt.encode({"sub": name, "exp": time.time() + lifetime}, secret,
                      algorithm="HS256").encode()
