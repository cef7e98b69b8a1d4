"""
The options of verified names: C{--jwt-key-file}, C{--jwt-algorithms},
C{--jwt-audience} and C{--jwt-issuer}.
"""

from __future__ import annotations

from twisted.python import usage

from .options import require_extra

_DEPENDENT = ("jwt-algorithms", "jwt-audience", "jwt-issuer")

# The shortest --max-line-length that takes tokens: a token's auth line
# must fit in a line (a JWT with a few claims is some hundreds of bytes,
# signed with RSA some hundreds more).
MIN_LINE_FOR_TOKENS = 4096


class JwtOptions(usage.Options):
    """
    Mixed into the plugin's options.  After parsing, C{jwt-verifier} holds
    a L{heartbeat._server.tokens.TokenVerifier}, or C{None}.
    """

    optParameters = [
        [
            "jwt-key-file",
            None,
            None,
            "Require a JSON Web Token: each connection starts with 'auth "
            "<jwt>', whose sub names it, and is closed at its exp unless it "
            "sends a fresh token. The file holds an HMAC secret (HS256, at "
            "least 32 bytes) or a public key in PEM (RS256 for RSA, ES256 "
            "for P-256...). Needs heartbeat[jwt].",
        ],
        [
            "jwt-algorithms",
            None,
            None,
            "The algorithms accepted, comma-separated, all suited to the "
            "key (e.g. RS256,PS256). [default: the key's: HS256, RS256, "
            "ES256...]",
        ],
        [
            "jwt-audience",
            None,
            None,
            "Accept only tokens whose aud names this audience. [default: "
            "tokens without aud]",
        ],
        [
            "jwt-issuer",
            None,
            None,
            "Accept only tokens whose iss is this issuer. [default: any]",
        ],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        self["jwt-verifier"] = None
        path = self["jwt-key-file"]
        if path is None:
            for name in _DEPENDENT:
                if self[name] is not None:
                    raise usage.UsageError(f"--{name} needs --jwt-key-file")
            return
        if self["auth-token-file"] is not None:
            raise usage.UsageError(
                "--jwt-key-file and --auth-token-file both say what 'auth' "
                "takes: give one"
            )
        if self["max-line-length"] < MIN_LINE_FOR_TOKENS:
            raise usage.UsageError(
                f"--jwt-key-file needs --max-line-length of at least "
                f"{MIN_LINE_FOR_TOKENS}: a token's auth line must fit in a line"
            )
        require_extra("jwt-key-file", "jwt", "jwt")
        from .._server.tokens import verifier_from_file

        algorithms = self["jwt-algorithms"]
        if algorithms is not None:
            algorithms = [a.strip() for a in algorithms.split(",") if a.strip()]
            if not algorithms:
                raise usage.UsageError("--jwt-algorithms must name at least one")
        try:
            self["jwt-verifier"] = verifier_from_file(
                path, algorithms, self["jwt-audience"], self["jwt-issuer"]
            )
        except ValueError as e:
            raise usage.UsageError(f"--jwt-key-file {path!r} {e}")
