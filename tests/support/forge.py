"""Forging raw compact JWS for tests (THREAT-MODEL section 0, ``forge.py``).

JWT libraries refuse to emit attack tokens (``alg: none``, duplicate members, padded
segments, embedded keys), so tests build them here from arbitrary header, payload and
signature bytes, and sign with ``cryptography`` directly: ES256 as raw 64-byte ``r || s``
(RFC 7518 section 3.4), RS256 as PKCS#1 v1.5 with SHA-256.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

Part = dict[str, Any] | list[Any] | str | bytes


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_part(part: Part) -> str:
    """A header or payload segment: bytes are taken as they are, anything else as JSON."""
    raw = part if isinstance(part, bytes) else json.dumps(part, separators=(",", ":")).encode()
    return b64(raw)


def compact(header: Part, payload: Part, signature: bytes = b"") -> str:
    """``b64(header).b64(payload).b64(signature)`` with no checks at all."""
    return f"{encode_part(header)}.{encode_part(payload)}.{b64(signature)}"


def sign_es256(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ES256 signature as 64 raw bytes ``r || s``."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign_rs256(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def sign_raw(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return sign_es256(key, data)
    return sign_rs256(key, data)


def forge(
    header: Part,
    payload: Part,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    signature: bytes | None = None,
) -> str:
    """A compact JWS of exactly this header and payload, signed by ``key`` (or ``signature``)."""
    signing_input = f"{encode_part(header)}.{encode_part(payload)}"
    if signature is None:
        signature = sign_raw(key, signing_input.encode("ascii")) if key is not None else b""
    return f"{signing_input}.{b64(signature)}"


def resign(token: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    """Replace the signature of ``token`` (whatever its first two segments hold)."""
    head, _, _ = token.rpartition(".")
    return f"{head}.{b64(sign_raw(key, head.encode('ascii')))}"


def _int_b64(value: int) -> str:
    return b64(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def public_jwk(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    kid: str,
    alg: str | None = None,
) -> dict[str, Any]:
    """The public JWK of ``key`` (RFC 7517/7518), with ``kid``, ``use: sig`` and ``alg``."""
    public = key.public_key() if hasattr(key, "private_numbers") else key
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64(numbers.x.to_bytes(32, "big")),
            "y": b64(numbers.y.to_bytes(32, "big")),
            "kid": kid,
            "use": "sig",
            "alg": alg or "ES256",
        }
    numbers = public.public_numbers()  # type: ignore[union-attr]
    return {
        "kty": "RSA",
        "n": _int_b64(numbers.n),
        "e": _int_b64(numbers.e),
        "kid": kid,
        "use": "sig",
        "alg": alg or "RS256",
    }


@dataclass
class TestKey:
    """A private key with its ``kid`` and ``alg``, for test issuers."""

    __test__ = False  # not a pytest class

    kid: str
    alg: str
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @classmethod
    def generate(cls, alg: str = "ES256", kid: str | None = None, bits: int = 2048) -> TestKey:
        private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        else:
            raise ValueError(alg)
        return cls(kid or f"test-{alg.lower()}-{id(private):x}", alg, private)

    @property
    def public(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        return self.private.public_key()

    def jwk(self) -> dict[str, Any]:
        return public_jwk(self.private, self.kid, self.alg)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}

    def sign(self, header: Part, payload: Part) -> str:
        return forge(header, payload, self.private)


# --------------------------------------------------------------------------- GA4GH tokens

#: The fixed "now" of verification tests (2023-11-14T22:13:20Z).
NOW = 1_700_000_000
BONA_FIDE = "https://doi.org/10.1038/s41431-018-0219-y"


def visa_object(
    type: str = "ControlledAccessGrants",
    value: str = "https://ega.example/datasets/EGAD0001",
    source: str = "https://ega.example/dacs/EGAC0001",
    by: str | None = "dac",
    asserted: int = NOW - 86_400,
    **extra: Any,
) -> dict[str, Any]:
    """A ``ga4gh_visa_v1`` object (``by=None`` leaves it out; ``extra`` adds or overrides members)."""
    obj: dict[str, Any] = {"type": type, "asserted": asserted, "value": value, "source": source}
    if by is not None:
        obj["by"] = by
    obj.update(extra)
    return obj


def visa_claims(
    iss: str,
    sub: str = "alice",
    visa: dict[str, Any] | None = None,
    /,
    *,
    iat: int = NOW - 60,
    exp: int = NOW + 3600,
    jti: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A visa JWT payload; ``extra`` adds claims, and a value of ``DROP`` removes one."""
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": sub,
        "iat": iat,
        "exp": exp,
        "jti": jti if jti is not None else f"visa-{next(_serial)}",
        "ga4gh_visa_v1": visa or visa_object(),
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not DROP}


DROP: Any = object()
_serial = iter(range(1, 10**9))


@dataclass
class Signer:
    """A test visa issuer or broker: an ``iss``, a key and the ``jku`` its visas name."""

    iss: str
    key: TestKey
    jku: str | None = None

    def header(self, typ: str | None = "vnd.ga4gh.visa+jwt", **extra: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": self.key.alg, "kid": self.key.kid}
        if typ is not None:
            header["typ"] = typ
        if self.jku is not None:
            header["jku"] = self.jku
        header.update(extra)
        return {k: v for k, v in header.items() if v is not DROP}

    def visa(
        self,
        sub: str = "alice",
        visa: dict[str, Any] | None = None,
        *,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A signed visa (header via :meth:`header` unless given)."""
        return forge(
            header if header is not None else self.header(),
            visa_claims(self.iss, sub, visa, **claims),
            self.key.private,
        )

    def passport(
        self,
        visas: list[str],
        sub: str = "alice",
        *,
        header: dict[str, Any] | None = None,
        iat: int = NOW - 10,
        exp: int = NOW + 600,
        **claims: Any,
    ) -> str:
        """A signed passport carrying ``visas`` (header typ vnd.ga4gh.passport+jwt, no jku)."""
        head = (
            header
            if header is not None
            else {"alg": self.key.alg, "kid": self.key.kid, "typ": "vnd.ga4gh.passport+jwt"}
        )
        payload: dict[str, Any] = {
            "iss": self.iss,
            "sub": sub,
            "iat": iat,
            "exp": exp,
            "jti": f"passport-{next(_serial)}",
            "ga4gh_passport_v1": visas,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not DROP}
        return forge(head, payload, self.key.private)


# --------------------------------------------------------------------------- a clearinghouse to test against

OWN_ISSUER = "https://broker.test/"


def resolved(key: TestKey) -> Any:
    """The key as broker.trust hands it to verifiers."""
    from broker.trust.keyset import ResolvedKey

    return ResolvedKey(key.kid, key.alg, key.public)


def trust_config(
    issuers: list[Signer] = (),
    brokers: list[Signer] = (),
    *,  # type: ignore[assignment]
    pinned: bool = True,
    allow_jku: bool = False,
    visa_types: dict[str, frozenset[str] | None] | None = None,
    sources: dict[str, frozenset[str] | None] | None = None,
    own_keys: Any = None,
) -> Any:
    """A real TrustConfig with each issuer's key pinned (``pinned``) and/or its ``jku`` allow-listed (``allow_jku``).

    Pinned only (the default) means nothing is ever fetched: tests without a JWKS server make no
    network request even for an unknown ``kid``. ``pinned=False`` implies ``allow_jku``. Brokers'
    keys are always pinned.
    """
    allow_jku = allow_jku or not pinned
    from broker.trust.config import TrustConfig, TrustedBroker, TrustedIssuer

    visa_issuers = {
        s.iss: TrustedIssuer(
            iss=s.iss,
            jku=frozenset({s.jku}) if s.jku and allow_jku else frozenset(),
            pinned={s.key.kid: resolved(s.key)} if pinned else {},
            visa_types=(visa_types or {}).get(s.iss),
            sources=(sources or {}).get(s.iss),
        )
        for s in issuers
    }
    trusted_brokers = {
        b.iss: TrustedBroker(iss=b.iss, jwks_uri=b.jku if allow_jku else None, pinned={b.key.kid: resolved(b.key)})
        for b in brokers
    }
    return TrustConfig(OWN_ISSUER, visa_issuers, trusted_brokers, own_keys)


def make_verifier(
    trust: Any,
    *,
    limits: Any = None,
    cache: Any = None,
    now: float = NOW,
    revoked: Any = None,
    session: Any = None,
    fetch: Any = None,
) -> Any:
    """A real Verifier over a real KeyResolver, with the clock frozen at ``now``."""
    from broker.core.limits import LimitSettings
    from broker.core.verify import Verifier
    from broker.trust.jwks import KeyResolver
    from broker.trust.settings import JwksFetchSettings

    clock = (lambda: now) if not callable(now) else now
    resolver = KeyResolver(trust, fetch or JwksFetchSettings(), session=session, clock=clock)
    return Verifier(trust, resolver, limits or LimitSettings(), cache=cache, clock=clock, revoked=revoked)
