"""
The options of verified names and of the push API, refused up front with
one line naming the option, and what a good set of them serves.
"""

import pytest
from twisted.python import usage

from heartbeat._service.tap import Options as ServerOptions

from .test_options import parse, served
from .tokens import SECRET, public_pem, rsa_key


@pytest.fixture
def files(tmp_path):
    """Paths of a secret, an RSA public key, and tokens, good and bad."""
    paths = {}
    for name, data in [("secret", SECRET), ("rsa", public_pem(rsa_key())),
                       ("api-token", b"0123456789abcdef0123\n"), ("short", b"short\n"),
                       ("shared", b"s3cret\n")]:
        paths[name] = str(tmp_path / name)
        (tmp_path / name).write_bytes(data)
    return paths


@pytest.mark.parametrize("argv, message", [
    (["--jwt-key-file", "{secret}", "--auth-token-file", "{shared}"],
     "--jwt-key-file and --auth-token-file both say what 'auth' takes"),
    (["--jwt-algorithms", "HS256"], "--jwt-algorithms needs --jwt-key-file"),
    (["--jwt-audience", "chat"], "--jwt-audience needs --jwt-key-file"),
    (["--jwt-issuer", "me"], "--jwt-issuer needs --jwt-key-file"),
    (["--jwt-key-file", "{rsa}", "--jwt-algorithms", "HS256"],
     "must never serve as an HMAC secret"),
    (["--jwt-key-file", "{short}"], "too short for HS256"),
    (["--jwt-key-file", "{secret}", "--jwt-algorithms", " , "], "must name at least one"),
    (["--jwt-key-file", "/nonexistent/key"], "cannot be read"),
    (["--jwt-key-file", "{secret}", "--max-line-length", "1000"],
     "needs --max-line-length of at least 4096"),
    (["--api-port", "8082"], "--api-port needs --api-token-file"),
    (["--api-token-file", "{api-token}"], "--api-token-file needs --api-port"),
    (["--api-port", "8082", "--api-token-file", "{short}"], "at least 16 characters"),
    (["--api-port", "nonsense:1", "--api-token-file", "{api-token}"],
     "--api-port 'nonsense:1' is not a server endpoint"),
    (["--api-port", "1234", "--api-token-file", "{api-token}"],
     "--api-port must differ from --port"),
    (["--api-port", "8081", "--api-token-file", "{api-token}", "--status-port", "8081"],
     "--api-port must differ from --status-port"),
    (["--api-port", "8082", "--api-token-file", "{api-token}", "--workers", "2"],
     "--api-port with --workers above 1 needs --redis"),
])
def test_bad_token_and_api_options_name_the_option(files, argv, message):
    """Each bad combination is refused in one line that says what to do."""
    with pytest.raises(usage.UsageError) as raised:
        parse(ServerOptions, *[arg.format(**files) for arg in argv])
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_key_file_makes_a_verifier_of_its_kind(files):
    """--jwt-key-file gives the server a verifier: HS256 for a secret, RS256
    for an RSA public key, or the algorithms given; with the audience and
    issuer given."""
    options = parse(ServerOptions, "--jwt-key-file", files["secret"])
    assert options["jwt-verifier"].algorithms == ["HS256"]
    options = parse(ServerOptions, "--jwt-key-file", files["rsa"],
                    "--jwt-algorithms", "RS256,PS256", "--jwt-audience", "chat",
                    "--jwt-issuer", "https://auth.example.com")
    verifier = options["jwt-verifier"]
    assert (verifier.algorithms, verifier.audience, verifier.issuer) == (
        ["RS256", "PS256"], "chat", "https://auth.example.com")
    [factory] = [served(options).factory]
    assert factory.jwtVerifier is verifier and factory.authToken is None
    assert parse(ServerOptions)["jwt-verifier"] is None


def test_the_api_port_is_served_beside_the_line_port(files):
    """--api-port with its token serves the API beside the line port."""
    options = parse(ServerOptions, "--api-port", "tcp:8082:interface=127.0.0.1",
                    "--api-token-file", files["api-token"])
    assert options["api-token"] == b"0123456789abcdef0123"
    listeners = {service.option: service for service in served(options)}
    assert sorted(listeners) == ["api-port", "port"]
    assert listeners["api-port"].description == "tcp:8082:interface=127.0.0.1"
