"""
Keys and tokens for the tests of verified names, minted with PyJWT as a
backend would mint them.
"""

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from heartbeat._server.tokens import TokenVerifier

SECRET = b"a shared secret of at least 32 bytes, for HS256"
# Where the tests' fake clocks start: a plausible now, so that tokens look
# like a backend's.
EPOCH = 1_700_000_000.0


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def ed_key():
    return ed25519.Ed25519PrivateKey.generate()


def public_pem(private):
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(private):
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def mint(clock, sub="alice", lifetime=60.0, key=SECRET, algorithm="HS256", **claims):
    """
    A token for C{sub} expiring C{lifetime} seconds from the clock's now
    (C{None}: never), with any other C{claims}.
    """
    payload = {"sub": sub, "iat": int(clock.seconds()), **claims}
    if lifetime is not None and "exp" not in claims:
        payload["exp"] = clock.seconds() + lifetime
    if sub is None:
        del payload["sub"]
    return jwt.encode(payload, key, algorithm=algorithm).encode()


def verifier(**kwargs):
    """The verifier of a server given SECRET (HS256)."""
    return TokenVerifier(SECRET, ["HS256"], **kwargs)
