"""
Verified names: a JSON Web Token from the application's own backend,
checked with PyJWT, names the connection that presents it (its C{sub}).

The key decides the algorithms: a shared secret signs with HMAC, a public
key in PEM with its own kind (RSA, an elliptic curve, Ed25519).  The
accepted algorithms are pinned when the server starts, never read from a
token, so that C{alg: none} and algorithm confusion (a public key taken
for an HMAC secret) are refused.  PyJWT checks the signature, the
algorithm, the audience, the issuer and the claims' types; the times
(C{exp}, C{nbf}) are checked here against the server's clock, which tests
drive, rather than against the wall clock PyJWT would read.

PyJWT (the C{jwt} extra) and C{cryptography} are imported only by a
server that verifies tokens.
"""

from __future__ import annotations

import math
from typing import Any, List, NamedTuple, Optional, Sequence

from .._cluster.identity import check_name

# The algorithms each kind of key may verify, the default first.
_RSA = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512",
           "secp256k1": "ES256K"}
_HMAC = ["HS256", "HS384", "HS512"]
# RFC 7518, 3.2: an HMAC key at least as long as the hash's output.
_HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class TokenRejected(Exception):
    """
    A token failed a check; the message names the check, never the token.
    """


class VerifiedToken(NamedTuple):
    """
    What a good token says.

    @ivar name: its C{sub}: the connection's name.
    @ivar expires: its C{exp}, in seconds since the epoch, or C{None}.
    """

    name: str
    expires: Optional[float]


class TokenVerifier:
    """
    Checks tokens against one key and the algorithms pinned for it.

    @ivar algorithms: the accepted algorithms.
    @ivar audience: the C{aud} a token must carry, or C{None}: a token
        carrying one is then refused, as RFC 7519 asks of a recipient that
        does not find itself named there.
    @ivar issuer: the C{iss} a token must carry, or C{None}: any.
    """

    def __init__(
        self,
        key: Any,
        algorithms: Sequence[str],
        audience: Optional[str] = None,
        issuer: Optional[str] = None,
    ) -> None:
        import jwt

        self._jwt = jwt
        self._key = key
        self.algorithms = list(algorithms)
        self.audience = audience
        self.issuer = issuer

    def verify(self, token: bytes, now: float) -> VerifiedToken:
        """
        The name and expiry of C{token}, if it passes every check at C{now}.

        @raise TokenRejected: it does not; the message says which check.
        """
        jwt = self._jwt
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["sub"],
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad signature")
        except jwt.InvalidAlgorithmError:
            raise TokenRejected(f"algorithm not allowed (only {', '.join(self.algorithms)})")
        except jwt.MissingRequiredClaimError as e:
            raise TokenRejected(f"no {e.claim} claim")
        except jwt.InvalidAudienceError:
            raise TokenRejected("wrong audience")
        except jwt.InvalidIssuerError:
            raise TokenRejected("wrong issuer")
        except jwt.exceptions.InvalidSubjectError:
            raise TokenRejected("sub is not a string")
        except jwt.PyJWTError:
            # DecodeError and the rest: not a token signed for us at all.
            raise TokenRejected("malformed token")
        expires = _time(claims, "exp")
        notBefore = _time(claims, "nbf")
        if expires is not None and expires <= now:
            raise TokenRejected("expired")
        if notBefore is not None and notBefore > now:
            raise TokenRejected("not yet valid")
        name = claims["sub"]
        try:
            check_name(name)
        except ValueError as e:
            raise TokenRejected(f"sub is not a name: {e}")
        return VerifiedToken(name, expires)


def _time(claims: dict, claim: str) -> Optional[float]:
    value = claims.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TokenRejected(f"{claim} is not a number")
    return float(value)


def load_key(data: bytes) -> tuple:
    """
    The key in a key file and the algorithms it may verify, the default
    first: a public key in PEM, or else a shared secret (surrounding
    whitespace stripped).

    @raise ValueError: no usable key.
    """
    if b"-----BEGIN" in data:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        if b"PRIVATE KEY" in data:
            raise ValueError(
                "holds a private key: give the server the public key only "
                "(openssl pkey -pubout), so that it can check tokens but not sign them"
            )
        try:
            key = load_pem_public_key(data.strip())
        except ValueError as e:
            raise ValueError(f"not a PEM public key: {e}")
        return key, _algorithms_for(key)
    secret = data.strip()
    if not secret:
        raise ValueError("is empty")
    return secret, list(_HMAC)


def _algorithms_for(key: Any) -> List[str]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return list(_RSA)
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = _CURVES.get(key.curve.name)
        if algorithm is None:
            raise ValueError(f"an elliptic curve JWT does not use: {key.curve.name}")
        return [algorithm]
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return ["EdDSA"]
    raise ValueError(f"a kind of key JWT does not use: {type(key).__name__}")


def verifier_from_file(
    path: str,
    algorithms: Optional[Sequence[str]] = None,
    audience: Optional[str] = None,
    issuer: Optional[str] = None,
) -> TokenVerifier:
    """
    The verifier for the key in C{path}: the algorithms are the key's
    default (HS256 for a secret, RS256 for RSA, ES256 for P-256...) unless
    given, and must suit the key.

    @raise ValueError: the file holds no usable key, or an algorithm does
        not suit it; the message completes a sentence about the file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot be read: {e.strerror}")
    key, suited = load_key(data)
    chosen = list(algorithms) if algorithms else suited[:1]
    for algorithm in chosen:
        if algorithm not in suited:
            raise ValueError(
                f"holds a key for {', '.join(suited)}, not {algorithm}"
                + (" (a public key must never serve as an HMAC secret)"
                   if algorithm in _HMAC else "")
            )
        least = _HMAC_KEY_BYTES.get(algorithm, 0)
        if isinstance(key, bytes) and len(key) < least:
            raise ValueError(
                f"holds a secret of {len(key)} bytes, too short for {algorithm} "
                f"(at least {least}, RFC 7518)"
            )
    return TokenVerifier(key, chosen, audience, issuer)
