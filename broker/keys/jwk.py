"""Public JWKs of our signing keys and their RFC 7638 thumbprints (our ``kid``).

Written here rather than taken from a JOSE library because the ``kid`` is what every
verifier of our tokens looks keys up by: its exact bytes must not change with a library
upgrade, and the rules are short enough to state and test completely.

RFC 7638 section 3: the thumbprint input is a JSON object holding only the *required*
members of the key type (EC: crv, kty, x, y; RSA: e, kty, n), sorted by member name in
code-point order, with no whitespace, encoded in UTF-8; the thumbprint is the base64url
(no padding) SHA-256 of those bytes. Member values are base64url strings or short names,
so we refuse any value that would need JSON escaping instead of escaping it: a value that
needs escaping is not a key we made.

Key encodings follow RFC 7518 section 6: RSA ``n``/``e`` are unsigned big-endian with no
leading zero octets; EC ``x``/``y`` are the full coordinate length (32 octets on P-256).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.errors import BrokerError

# Required members per key type (RFC 7638 section 3.2, RFC 7518 section 6).
REQUIRED_MEMBERS: dict[str, tuple[str, ...]] = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
}
# Members a published JWK may never carry: private key parts (THREAT-MODEL JWT-24).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MIN_RSA_BITS = 2048  # RFC 7518 section 3.3
P256_COORDINATE_OCTETS = 32

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


class JwkError(BrokerError, ValueError):
    """A JWK we cannot use: wrong type, missing member, bad encoding."""

    status = 400
    code = "invalid_key"


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: only the alphabet, canonical trailing bits."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise JwkError("expected a base64url string without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JwkError("expected a base64url string without padding") from None
    if b64url_encode(data) != text:  # non-zero unused trailing bits: a second spelling of the same bytes
        raise JwkError("non-canonical base64url")
    return data


def _uint(n: int, length: int | None = None) -> str:
    if length is None:
        length = max(1, (n.bit_length() + 7) // 8)
    return b64url_encode(n.to_bytes(length, "big"))


def public_jwk(public_key: Any) -> dict[str, Any]:
    """The required public members of an RSA or P-256 key, as a JWK (no kid, alg, use)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise JwkError(f"unsupported curve {public_key.curve.name}; only P-256 (ES256)")
        point = public_key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _uint(point.x, P256_COORDINATE_OCTETS),
            "y": _uint(point.y, P256_COORDINATE_OCTETS),
        }
    raise JwkError(f"unsupported key type {type(public_key).__name__}; only RSA and EC P-256")


def thumbprint_input(jwk: Mapping[str, Any]) -> bytes:
    """The exact octets RFC 7638 hashes: required members only, sorted, no whitespace."""
    kty = jwk.get("kty")
    if not isinstance(kty, str) or kty not in REQUIRED_MEMBERS:
        raise JwkError(f"unsupported or missing kty {kty!r}; expected one of {sorted(REQUIRED_MEMBERS)}")
    parts = []
    for name in sorted(REQUIRED_MEMBERS[kty]):
        value = jwk.get(name)
        if not isinstance(value, str) or not value:
            raise JwkError(f"{kty} key: required member {name!r} is missing or not a string")
        if not _NAME.fullmatch(value):  # base64url values and names like "P-256" never need escaping
            raise JwkError(f"{kty} key: member {name!r} has characters a key member never holds")
        parts.append(f'"{name}":"{value}"')
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK SHA-256 thumbprint, base64url: the ``kid`` of our keys."""
    return b64url_encode(hashlib.sha256(thumbprint_input(jwk)).digest())


def public_key_from_jwk(jwk: Mapping[str, Any]) -> Any:
    """A ``cryptography`` public key from one of *our* public JWKs (RSA >= 2048 bits or P-256).

    Refuses private members, short RSA moduli and points not on the curve, so a damaged
    or planted record never becomes a verification key.
    """
    leaked = PRIVATE_MEMBERS.intersection(jwk)
    if leaked:
        raise JwkError(f"public JWK carries private members {sorted(leaked)}")
    thumbprint_input(jwk)  # checks kty and the presence and shape of every required member
    if jwk["kty"] == "RSA":
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(b64url_decode(jwk["e"]), "big")
        if n.bit_length() < MIN_RSA_BITS:
            raise JwkError(f"RSA modulus of {n.bit_length()} bits; at least {MIN_RSA_BITS} required")
        if e < 3 or e % 2 == 0:
            raise JwkError("RSA public exponent must be odd and at least 3")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if jwk["crv"] != "P-256":
        raise JwkError(f"unsupported curve {jwk['crv']!r}; only P-256 (ES256)")
    x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
    if len(x) != P256_COORDINATE_OCTETS or len(y) != P256_COORDINATE_OCTETS:
        raise JwkError("P-256 coordinates must be exactly 32 octets")
    try:
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError:
        raise JwkError("EC point is not on P-256") from None
