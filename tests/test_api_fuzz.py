"""
The push API fuzzed by schemathesis against its own description
(heartbeat/web/openapi.json), over real sockets against the real server:
no answer is a 5xx, and every answer keeps to the description.
"""

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from heartbeat._server.assets import WEB_ROOT

from .apiclient import API_TOKEN, Api, api_options, listening
from .processes import Peer, Server

DESCRIPTION = WEB_ROOT / "openapi.json"
AUTHORIZED = {"Authorization": f"Bearer {API_TOKEN}"}

schema = schemathesis.openapi.from_path(DESCRIPTION)

# No 5xx, and every answer as described; and a request the description
# allows is taken.  (Not schemathesis's check that a request breaking the
# description is refused: a line is any bytes, so a body it "breaks" by
# being, say, a JSON object as text/plain is still a line to send.  The
# refusals that matter, of names, limits, long lines and newlines, are
# tested in test_api.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance,
          positive_data_acceptance]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """
    An open server with its API, and a few named connections for the
    calls to find: C{(server, api)}.
    """
    options, port = api_options(tmp_path_factory.mktemp("api"))
    server = Server("--max-line-length", "512", *options)
    peers = []
    try:
        listening(port)
        for name in ("alice", "bob", "a/b"):
            peer = Peer(server.port)
            peer.send(b"heartbeat/1 name=%s\n" % name.encode())
            assert peer.readline().startswith(b"heartbeat/1 ")
            peers.append(peer)
        yield server, Api(port)
    finally:
        for peer in peers:
            peer.close()
        server.stop()


def test_the_api_serves_the_description_the_tests_use(server):
    """/openapi.json is the package's description, byte for byte, and an
    OpenAPI 3 document that names every operation the API has."""
    server, api = server
    status, served = api.call("GET", "/openapi.json")
    assert status == 200 and served == json.loads(DESCRIPTION.read_text())
    assert served["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, item in served["paths"].items()
                  for method in item}
    assert operations == {
        ("POST", "/send/{name}"), ("POST", "/broadcast"),
        ("GET", "/presence/{name}"), ("GET", "/presence"),
        ("DELETE", "/connections/{name}"), ("GET", "/openapi.json"),
    }


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_its_description(case, server):
    """Whatever a backend sends, valid or not, the server answers without a
    5xx, with a status, headers and a JSON body its description allows."""
    server, api = server
    checks = list(CHECKS)
    if case.media_type == "application/octet-stream":
        # OpenAPI 3 has no way to say "no byte 0x0A" of a binary body (the
        # description says it in words, and lists the 400): such a body
        # that holds one is refused, as it must be, not wrongly.
        checks.remove(positive_data_acceptance)
    case.call_and_validate(base_url=f"http://127.0.0.1:{api.port}", headers=AUTHORIZED,
                           checks=checks)
    assert server.process.poll() is None
