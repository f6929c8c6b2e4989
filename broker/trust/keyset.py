"""Public verification keys: parsing a JWK Set, and choosing the one key a token may use.

Keys are parsed with PyJWT (``jwt.PyJWK``), never by hand. What is written here is the
policy around it, and it is security-critical, so each rule is explicit and tested
(tests/trust/test_keyset.py):

- Only EC and RSA public keys are kept. ``oct`` (a shared secret must never be published),
  OKP and unknown types are ignored; a key carrying private members (``d``, ``p``, ...) is
  ignored (its owner leaked it); ``use`` other than ``sig`` and ``key_ops`` without
  ``verify`` are ignored. One bad key never spoils the others.
- A key fits a header ``alg`` only when its own ``alg`` (the JWK member, or the one PyJWT
  infers from ``kty``/``crv``) equals the header's, and the key object is what the algorithm
  needs: ES256 a P-256 key, RS256 an RSA key of at least 2048 bits with ``e >= 65537``
  (RFC 7518 section 3.3; THREAT-MODEL JWT-03, JWT-24).
- ``kid`` is only ever a dictionary key compared as a whole string. A token without ``kid``
  may use a key only when the set holds exactly one usable key, and that key fits (JWT-04;
  RP conformance ``rp-id_token-kid-absent-multiple-jwks``): with several keys published we
  never pick one for the token, not even the only one that fits its ``alg`` (that would let
  the token's own header choose among the issuer's keys). Members ignored above (``enc``
  keys, ``oct``, private or broken keys) are not usable, so they do not count. Refused with
  KID_REQUIRED, which a refetch cannot cure, so it never triggers one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.core.models import ALLOWED_ALGORITHMS, Reason
from broker.core.models import KeyResolutionError as KeyResolutionError  # re-exported: callers catch it from here
from broker.core.untrusted_json import exceeds_depth
from broker.errors import BrokerError

# JWK members that only a private (or symmetric) key has (RFC 7518 section 6).
PRIVATE_MEMBERS: frozenset[str] = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
KEY_TYPES: frozenset[str] = frozenset({"EC", "RSA"})
MIN_RSA_BITS = 2048
MIN_RSA_EXPONENT = 65537
MEDIA_TYPES: frozenset[str] = frozenset({"application/json", "application/jwk-set+json"})

# What PyJWT (and cryptography under it) may raise for a malformed JWK.
_PARSE_ERRORS = (
    jwt.exceptions.PyJWTError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    OverflowError,
    UnsupportedAlgorithm,
)


class JwksFormatError(BrokerError, ValueError):
    """A JWK Set document that is not usable as a whole (not JSON, not ``{"keys": [...]}``, too many keys)."""

    status = 502
    code = "bad_jwks"


@dataclass(frozen=True)
class ResolvedKey:
    """One public verification key: its ``kid`` ("" when the JWK has none), ``alg`` and key object.

    ``key`` is a ``cryptography`` public key: ``EllipticCurvePublicKey`` or ``RSAPublicKey``.
    """

    kid: str
    alg: str
    key: Any


@dataclass(frozen=True)
class KeySet:
    """The usable keys of one JWK Set, and a short reason for each member that was ignored.

    Every (kid, allowed alg) that resolves to a key is worked out once, when the set is
    built, so a hit on the hot path is one dictionary access; anything else takes the full
    rules of :func:`select_key` (and so gets its precise reason).
    """

    keys: tuple[ResolvedKey, ...] = ()
    ignored: tuple[str, ...] = ()
    _hits: dict[tuple[str | None, str], ResolvedKey] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for alg in ALLOWED_ALGORITHMS:
            for kid in {k.kid for k in self.keys if k.kid} | {None}:
                try:
                    self._hits[(kid, alg)] = select_key(self.keys, kid, alg, "")
                except KeyResolutionError:
                    continue

    def select(self, kid: str | None, alg: str, where: str) -> ResolvedKey:
        """The key a token with this ``kid`` and header ``alg`` must be verified with."""
        if isinstance(kid, str | None) and isinstance(alg, str):
            hit = self._hits.get((kid, alg))
            if hit is not None:
                return hit
        return select_key(self.keys, kid, alg, where)


def show(value: object, limit: int = 80) -> str:
    """A header value made safe for an error detail: escaped (``repr``) and cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def key_misfit(key: ResolvedKey, alg: str) -> str | None:
    """Why ``key`` may not verify a token whose header says ``alg``; None when it may."""
    if alg not in ALLOWED_ALGORITHMS:
        return f"algorithm {show(alg)} is not accepted (only {', '.join(sorted(ALLOWED_ALGORITHMS))})"
    if key.alg != alg:
        return f"key {show(key.kid)} is for {key.alg}, the token says {alg}"
    k = key.key
    if alg == "ES256":
        if not isinstance(k, ec.EllipticCurvePublicKey) or k.curve.name != "secp256r1":
            return f"key {show(key.kid)} is not a P-256 EC public key, which ES256 needs"
        return None
    # RS256
    if not isinstance(k, rsa.RSAPublicKey):
        return f"key {show(key.kid)} is not an RSA public key, which RS256 needs"
    if k.key_size < MIN_RSA_BITS:
        return f"key {show(key.kid)} is RSA-{k.key_size}; RS256 needs {MIN_RSA_BITS} bits or more"
    if k.public_numbers().e < MIN_RSA_EXPONENT:
        return f"key {show(key.kid)} has a public exponent below {MIN_RSA_EXPONENT}"
    return None


def select_key(keys: Iterable[ResolvedKey], kid: str | None, alg: str, where: str) -> ResolvedKey:
    """Choose the one key for (``kid``, ``alg``) among ``keys``, or raise :class:`KeyResolutionError`.

    ``where`` names the key source in the detail (an issuer, a JWKS URL). Rules: a named
    ``kid`` must match a key's ``kid`` exactly and the key must fit ``alg`` (else BAD_ALG);
    two fitting keys with one ``kid`` are ambiguous and refused; no ``kid`` is allowed only
    when the set holds exactly one key and it fits ``alg`` (KID_REQUIRED when it holds
    several, whatever their algorithms).
    """
    if kid is None:
        candidates = list(keys)
        if len(candidates) > 1:
            raise KeyResolutionError(
                Reason.KID_REQUIRED,
                f"token has no kid and {where} publishes {len(candidates)} keys; a kid is required",
            )
        if not candidates or key_misfit(candidates[0], alg) is not None:
            raise KeyResolutionError(Reason.KEY_NOT_FOUND, f"token has no kid and no {alg} key of {where} fits")
        return candidates[0]
    if not isinstance(kid, str) or not kid:
        raise KeyResolutionError(Reason.KEY_NOT_FOUND, f"kid {show(kid)} is not a non-empty string")
    named = [k for k in keys if k.kid == kid]
    if not named:
        raise KeyResolutionError(Reason.KEY_NOT_FOUND, f"no key with kid {show(kid)} at {where}")
    misfits = [key_misfit(k, alg) for k in named]
    fitting = [k for k, why in zip(named, misfits, strict=True) if why is None]
    if len(fitting) == 1:
        return fitting[0]
    if not fitting:
        raise KeyResolutionError(Reason.BAD_ALG, str(misfits[0]))
    raise KeyResolutionError(Reason.KEY_NOT_FOUND, f"{len(fitting)} keys at {where} share kid {show(kid)}")


def parse_key(jwk: Any) -> ResolvedKey:
    """One public JWK as a :class:`ResolvedKey`; ``ValueError`` with a short reason if it is not usable.

    The reason never quotes key material (PyJWT's own messages can, so they are not reused).
    """
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    kty = jwk.get("kty")
    if not isinstance(kty, str):
        raise ValueError("kty missing or not a string")
    if kty == "oct":
        raise ValueError("symmetric (oct) key: never accepted from a key set")
    if kty not in KEY_TYPES:
        raise ValueError(f"key type {show(kty, 20)} is not used (EC and RSA only)")
    private = sorted(PRIVATE_MEMBERS & jwk.keys())
    if private:
        raise ValueError(f"carries private key members ({', '.join(private)})")
    kid = jwk.get("kid", "")
    if not isinstance(kid, str):
        raise ValueError("kid is not a string")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"use is {show(use, 20)}, not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ValueError("key_ops does not allow 'verify'")
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise ValueError("alg is not a string")
    try:
        parsed = jwt.PyJWK(jwk)
    except _PARSE_ERRORS as exc:
        raise ValueError(f"invalid {kty} key ({exc.__class__.__name__})") from None
    key = parsed.key
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError("not an EC or RSA public key")
    return ResolvedKey(kid=kid, alg=parsed.algorithm_name, key=key)


def parse_jwks(document: Any, max_keys: int) -> KeySet:
    """A decoded JWK Set as a :class:`KeySet`: bad members are ignored one by one, a bad whole is refused.

    Raises :class:`JwksFormatError` when ``document`` is not ``{"keys": [...]}`` or has more
    than ``max_keys`` members.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksFormatError('not a JWK Set (expected {"keys": [...]})')
    members = document["keys"]
    if len(members) > max_keys:
        raise JwksFormatError(f"{len(members)} keys, more than the limit of {max_keys}")
    keys: list[ResolvedKey] = []
    ignored: list[str] = []
    for i, member in enumerate(members):
        try:
            keys.append(parse_key(member))
        except ValueError as exc:
            ignored.append(f"keys[{i}]: {exc}")
    return KeySet(keys=tuple(keys), ignored=tuple(ignored))


# A JWK Set is {"keys": [{...}]} with shallow members; anything far deeper is hostile.
MAX_JWKS_DEPTH = 16


def decode_json(body: bytes) -> Any:
    """Strict JSON for key sets: UTF-8, no duplicate member names, no NaN/Infinity, bounded nesting.

    Python's ``json`` silently keeps the last of duplicate names (THREAT-MODEL JWT-19) and
    accepts ``NaN``; both are refused here. Raises :class:`JwksFormatError`.
    """
    try:
        text = body.decode("utf-8")
        if exceeds_depth(text, MAX_JWKS_DEPTH):
            raise JwksFormatError(f"JSON nested deeper than {MAX_JWKS_DEPTH}")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise JwksFormatError("body is not UTF-8") from None
    except RecursionError:
        raise JwksFormatError("JSON nested too deeply") from None
    except ValueError as exc:
        raise JwksFormatError(f"not valid JSON ({_first_line(exc)})") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate member name {show(name, 40)}")
        out[name] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else exc.__class__.__name__


def public_fingerprint(key: ResolvedKey) -> str:
    """A stable text for a key (kid, alg, SubjectPublicKeyInfo in hex): what trust version hashes cover."""
    der = key.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"{key.kid}|{key.alg}|{der.hex()}"
