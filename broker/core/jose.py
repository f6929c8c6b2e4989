"""Strict compact JWS (RFC 7515) parsing and RS256 / ES256 signature checks.

Why this is written here rather than taken from PyJWT: PyJWT spends about 130 us per
decode whatever the algorithm (BASELINE.md), which alone would hold a 10-visa passport
to ~0.14 of the RS256 crypto limit; and on several points it is more permissive than a
clearinghouse may be (duplicate JSON members, ``=``-padded segments, embedded ``jwk``
headers, ``NaN``/huge numbers). This module is therefore a security boundary and is kept
small, with every rule below tested in ``tests/core/test_jose.py``, the threat-model
tests and a differential test against PyJWT (``test_jose_differential.py``) that shows
we never accept a token PyJWT would refuse.

What a token must be to get past :func:`parse` (each failure is a :class:`JoseError`
with a machine-readable :class:`~broker.core.models.Reason`):

- a ``str`` no longer than the caller's byte limit, checked before anything is decoded;
- exactly three segments (header and payload not empty) of the base64url alphabet (no
  ``=`` padding, no ``+``/``/``, no whitespace) whose last character is canonical (unused bits zero), so
  one token has exactly one spelling;
- header and payload: strict UTF-8 JSON objects, duplicate member names rejected, no
  ``NaN``/``Infinity``, nesting no deeper than the caller's limit, no lone surrogate or
  NUL in any string;
- header ``alg`` exactly ``RS256`` or ``ES256`` (never ``none``, ``HS*`` or another
  spelling), no ``crit`` or ``b64`` (we understand no extensions), no embedded key
  material (``jwk``, ``x5c``, ``x5u``: never used, always refused), no JWE members
  (``enc``, ``zip``); ``kid``, ``typ`` and ``jku`` strings when present (a member set to
  ``null`` is present, and refused: it is not a string). ``jku`` is only
  reported: it is resolved by the trust allow-list of the token's issuer, never here.

:func:`require_typ` and :func:`key_by_kid` are the two checks every caller that knows its
token class makes next (our access tokens, ID token hints, client assertions): the ``typ``
is one the class allows, and the key is the one the header's ``kid`` names in the caller's
key set, for exactly the header's ``alg``.

:func:`verify_signature` then checks the signature with ``cryptography`` directly:
ES256 takes exactly 64 bytes ``r || s`` (RFC 7518 section 3.4) which are converted to
DER; RS256 is PKCS#1 v1.5 with SHA-256 and a signature exactly the modulus length. The
key must match the algorithm (P-256 for ES256, RSA of at least 2048 bits for RS256).
"""

from __future__ import annotations

import binascii
import importlib
import json
import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from broker.core.models import ALLOWED_ALGORITHMS, Reason
from broker.errors import BrokerError

pybase64: Any
try:  # an optional accelerator; see _b64decode
    pybase64 = importlib.import_module("pybase64")
except ImportError:  # pragma: no cover - depends on the environment
    pybase64 = None

#: Longest header segment we decode (base64url characters); ours are about 400.
MAX_HEADER_CHARS = 4096
#: Longest ``kid`` we pass on to key resolution.
MAX_KID_CHARS = 256
#: Longest ``jku`` we pass on to the allow-list check.
MAX_JKU_CHARS = 2048
#: The smallest RSA modulus we verify with (RFC 7518 section 3.3).
MIN_RSA_BITS = 2048

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The byte values allowed last in a segment of length 4k+2 (4 unused bits must be zero)
# and 4k+3 (2 unused bits must be zero): RFC 4648 section 3.5, canonical encoding.
_CANONICAL_LAST = {
    0: frozenset(_ALPHABET.encode("ascii")),
    2: frozenset(ord(c) for i, c in enumerate(_ALPHABET) if i & 0x0F == 0),
    3: frozenset(ord(c) for i, c in enumerate(_ALPHABET) if i & 0x03 == 0),
}
_COUNT_LIMIT = 2048
#: Headers that passed every check, by their exact base64url bytes. All visas of one issuer
#: share one header, so this saves a decode, a JSON parse and the header checks per visa;
#: parsing is a pure function of the bytes, so a hit is the same answer. Bounded: cleared
#: when full (a flood of distinct headers only costs misses).
HEADER_MEMO_ENTRIES = 512
_HEADERS: dict[bytes, tuple[Mapping[str, Any], str, Any, Any, Any]] = {}  # header, alg, kid, typ, jku
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = {0: b"", 2: b"==", 3: b"="}
# Header members that would make us use a key or an extension we do not accept.
_EMBEDDED_KEY_MEMBERS = ("jwk", "x5c", "x5u")
_REFUSED_MEMBERS = frozenset({"jwk", "x5c", "x5u", "crit", "b64", "enc", "zip"})

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_PKCS1V15 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


class JoseError(BrokerError):
    """A token is not an acceptable compact JWS; ``reason`` says why, ``detail`` says where.

    The detail never contains the token or any segment of it.
    """

    status = 401
    code = "invalid_token"

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Jws(NamedTuple):
    """A parsed compact JWS whose signature has not been checked yet (a tuple: cheap to make)."""

    header: Mapping[str, Any]  # read-only: parsed headers are shared (see HEADER_MEMO_ENTRIES)
    payload: dict[str, Any]
    signing_input: bytes  # ASCII ``header.payload`` exactly as received
    signature: bytes
    alg: str
    kid: str | None
    typ: str | None
    jku: str | None


# --------------------------------------------------------------------------- base64url


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2)."""
    return binascii.b2a_base64(data, newline=False).translate(bytes.maketrans(b"+/", b"-_")).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    """Decode one unpadded, canonical base64url segment; :class:`JoseError` otherwise."""
    if not _B64URL.fullmatch(segment):
        raise JoseError(Reason.MALFORMED, "segment is not base64url (padding, whitespace or another alphabet)")
    return _decode_checked(segment.encode("ascii"), "segment") if segment else b""


def _decode_checked(segment: bytes, what: str) -> bytes:
    # The caller made sure there is no "+", "/" or "=" (so the translation below cannot
    # turn standard base64 into valid input); here: length, canonical last character, and
    # (in strict mode) nothing outside the alphabet.
    rest = len(segment) & 3
    if rest == 1:
        raise JoseError(Reason.MALFORMED, f"{what}: impossible base64url length")
    if segment[-1] not in _CANONICAL_LAST[rest]:
        raise JoseError(Reason.MALFORMED, f"{what}: not base64url or not canonical (unused bits set)")
    try:
        return _b64decode(segment + _PADDING[rest])
    except (binascii.Error, ValueError):
        raise JoseError(Reason.MALFORMED, f"{what} is not base64url") from None


def _b64decode_binascii(padded: bytes) -> bytes:
    # Strict mode refuses anything outside the alphabet (whitespace, "=" inside, ...).
    return binascii.a2b_base64(padded.translate(_TO_STANDARD), strict_mode=True)


def _b64decode_pybase64(padded: bytes) -> bytes:
    # validate=True refuses anything outside the alphabet; with altchars it would also take
    # "+" and "/", which parse() has already refused.
    decoded: bytes = pybase64.b64decode(padded, altchars=b"-_", validate=True)
    return decoded


#: The base64 decoder: pybase64 (SIMD, ~10x faster on a passport) when installed, else the
#: standard library. Both are given the same checked input and refuse the same bytes.
_b64decode = _b64decode_pybase64 if pybase64 is not None else _b64decode_binascii


# --------------------------------------------------------------------------- strict JSON


class _DuplicateKey(ValueError):
    pass


class _BadConstant(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"duplicate member {key[:40]!r}")
            seen.add(key)
    return out


def _reject_constant(name: str) -> Any:
    raise _BadConstant(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadConstant("number out of range")
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant, parse_float=_finite_float
)
# The scanner itself (C): JSONDecoder.decode adds only whitespace handling around it.
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_JSON_WHITESPACE = " \t\n\r"


def loads_strict(raw: bytes, max_depth: int, what: str = "JSON") -> Any:
    """Parse JSON the strict way (see the module docstring); :class:`JoseError` otherwise.

    Depth: for small texts the count of ``{`` and ``[`` bounds it, and the parsed value is
    walked only when that count is over the limit; big texts are always walked (cheaper
    than scanning them). Strings are checked for lone surrogates and NUL only when the
    text has a backslash (a ``\\u`` escape is the only way to write them in valid JSON).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JoseError(Reason.MALFORMED, f"{what} is not UTF-8") from None
    text = text.strip(_JSON_WHITESPACE)
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        raise JoseError(Reason.MALFORMED, f"{what} is not valid JSON") from None
    except _DuplicateKey as exc:
        raise JoseError(Reason.DUPLICATE_KEY, f"{what}: {exc}") from None
    except RecursionError:
        raise JoseError(Reason.TOO_DEEP, f"{what} nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, _BadConstant, int digit limit
        raise JoseError(Reason.MALFORMED, f"{what} is not valid JSON ({exc.__class__.__name__})") from None
    if end != len(text):
        raise JoseError(Reason.MALFORMED, f"{what} has data after the JSON value")
    escaped = b"\\" in raw
    if escaped or len(text) > _COUNT_LIMIT or text.count("{") + text.count("[") > max_depth:
        _walk(value, max_depth, what, check_strings=escaped)
    return value


def _walk(value: Any, max_depth: int, what: str, check_strings: bool) -> None:
    """Exact depth check (and string check) of a parsed value, pushing only containers."""
    if type(value) is not dict and type(value) is not list:
        if check_strings and type(value) is str:
            _check_string(value, what)
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise JoseError(Reason.TOO_DEEP, f"{what} nested deeper than {max_depth}")
        if type(node) is dict:
            if check_strings:
                for key in node:
                    _check_string(key, what)
            children: Any = node.values()
        else:
            children = node
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif check_strings and kind is str:
                _check_string(child, what)


def _check_string(text: str, what: str) -> None:
    if "\x00" in text:
        raise JoseError(Reason.MALFORMED, f"{what} has a NUL character in a string")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JoseError(Reason.MALFORMED, f"{what} has a lone surrogate in a string") from None


# --------------------------------------------------------------------------- parsing


def parse(token: object, *, max_bytes: int, max_depth: int) -> Jws:
    """Split, decode and check a compact JWS up to (not including) its signature.

    ``max_bytes`` bounds the whole token and is checked before anything is decoded.
    """
    if type(token) is not str:
        raise JoseError(Reason.MALFORMED, "token is not a string")
    if len(token) > max_bytes:
        raise JoseError(Reason.TOO_LARGE, f"token is {len(token)} bytes, limit {max_bytes}")
    if not token.isascii():
        raise JoseError(Reason.MALFORMED, "token has non-ASCII characters")
    raw = token.encode("ascii")
    # The standard-alphabet and padding characters; every other stray character is refused
    # by the strict decoding of each segment.
    if b"=" in raw or b"+" in raw or b"/" in raw:
        raise JoseError(Reason.MALFORMED, _why_not_compact(token))
    # Exactly two dots; header and payload not empty (find is memchr; split is much slower).
    # An empty signature is left for the checks below: "alg none" is then reported as such.
    first = raw.find(b".")
    second = raw.find(b".", first + 1)
    if first <= 0 or second <= first + 1 or raw.find(b".", second + 1) != -1:
        raise JoseError(Reason.MALFORMED, _why_not_compact(token))
    header_b64 = raw[:first]
    payload_b64 = raw[first + 1 : second]
    signature_b64 = raw[second + 1 :]
    if len(header_b64) > MAX_HEADER_CHARS:
        raise JoseError(Reason.TOO_LARGE, f"header is {len(header_b64)} characters, limit {MAX_HEADER_CHARS}")
    known = _HEADERS.get(header_b64)
    if known is None:
        parsed = loads_strict(_decode_checked(header_b64, "header"), max_depth, "header")
        if type(parsed) is not dict:
            raise JoseError(Reason.MALFORMED, "header is not a JSON object")
        known = (
            MappingProxyType(parsed),
            _check_header(parsed),
            parsed.get("kid"),
            parsed.get("typ"),
            parsed.get("jku"),
        )
        if len(_HEADERS) >= HEADER_MEMO_ENTRIES:
            _HEADERS.clear()
        _HEADERS[header_b64] = known
    header, alg, kid, typ, jku = known
    payload = loads_strict(_decode_checked(payload_b64, "payload"), max_depth, "payload")
    if type(payload) is not dict:
        raise JoseError(Reason.MALFORMED, "payload is not a JSON object")
    signature = _decode_checked(signature_b64, "signature") if signature_b64 else b""
    signing_input = raw[:second]
    return Jws(header, payload, signing_input, signature, alg, kid, typ, jku)


def _why_not_compact(token: str) -> str:
    parts = token.split(".")
    if len(parts) != 3:
        extra = " (JWE?)" if len(parts) == 5 else ""
        return f"expected 3 dot-separated segments, got {len(parts)}{extra}"
    for name, part in zip(("header", "payload", "signature"), parts, strict=True):
        if not part:
            if name == "signature":
                continue
            return f"{name} segment is empty"
        if not _B64URL.fullmatch(part):
            return f"{name} segment is not base64url (padding, whitespace or another alphabet)"
    return "not a compact JWS"


def _check_header(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if type(alg) is not str or alg not in ALLOWED_ALGORITHMS:
        shown = alg[:20] if isinstance(alg, str) else type(alg).__name__
        raise JoseError(Reason.BAD_ALG, f"alg {shown!r} is not RS256 or ES256")
    if not _REFUSED_MEMBERS.isdisjoint(header):
        for name in _EMBEDDED_KEY_MEMBERS:
            if name in header:
                raise JoseError(Reason.EMBEDDED_KEY, f"header carries {name!r}: embedded keys are never used")
        if "crit" in header or "b64" in header:
            raise JoseError(Reason.CRIT_UNSUPPORTED, "header names an extension (crit/b64); we support none")
        raise JoseError(Reason.MALFORMED, "header has JWE members (enc/zip): only compact JWS is accepted")
    # Membership, not ``get``: ``"kid": null`` is a malformed kid, never an absent one (RFC 7515
    # section 4.1.4: kid is a string). Treating null as absent would let a token choose the
    # looser no-kid key rule by sending a member it is not allowed to send.
    if "kid" in header:
        kid = header["kid"]
        if type(kid) is not str or not 0 < len(kid) <= MAX_KID_CHARS:
            shown = "null" if kid is None else type(kid).__name__
            raise JoseError(
                Reason.MALFORMED, f"header kid must be a string of 1..{MAX_KID_CHARS} characters (got {shown})"
            )
    if "typ" in header and type(header["typ"]) is not str:
        raise JoseError(Reason.MALFORMED, "header typ must be a string")
    if "jku" in header:
        jku = header["jku"]
        if type(jku) is not str or not 0 < len(jku) <= MAX_JKU_CHARS:
            raise JoseError(Reason.MALFORMED, f"header jku must be a string of 1..{MAX_JKU_CHARS} characters")
    return alg


# --------------------------------------------------------------------------- signatures


def check_key(alg: str, key: object) -> None:
    """The key can verify ``alg`` (P-256 for ES256, RSA >= 2048 bits for RS256)."""
    kind = _key_kind(key)
    if alg == "ES256":
        if kind != "EC" or key.curve.name != "secp256r1":  # type: ignore[attr-defined]
            raise JoseError(Reason.BAD_ALG, "ES256 needs a P-256 public key")
    elif alg == "RS256":
        if kind != "RSA":
            raise JoseError(Reason.BAD_ALG, "RS256 needs an RSA public key")
        if key.key_size < MIN_RSA_BITS:  # type: ignore[attr-defined]
            raise JoseError(Reason.KEY_NOT_FOUND, f"RSA key of {key.key_size} bits is below {MIN_RSA_BITS}")  # type: ignore[attr-defined]
    else:
        raise JoseError(Reason.BAD_ALG, "alg is not RS256 or ES256")


# Concrete key class -> "EC" | "RSA" | "": isinstance against the ABCs costs ~1 us each.
_KEY_KINDS: dict[type, str] = {}


def _key_kind(key: object) -> str:
    kind = _KEY_KINDS.get(type(key))
    if kind is None:
        if isinstance(key, ec.EllipticCurvePublicKey):
            kind = "EC"
        elif isinstance(key, rsa.RSAPublicKey):
            kind = "RSA"
        else:
            kind = ""
        _KEY_KINDS[type(key)] = kind
    return kind


def verify_signature(jws: Jws, key: object) -> None:
    """Check ``jws``'s signature with ``key``; :class:`JoseError` (BAD_SIGNATURE) if it fails."""
    check_key(jws.alg, key)
    signature = jws.signature
    try:
        if jws.alg == "ES256":
            if len(signature) != 64:
                raise JoseError(Reason.BAD_SIGNATURE, f"ES256 signature must be 64 bytes, got {len(signature)}")
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            if r == 0 or s == 0:
                raise JoseError(Reason.BAD_SIGNATURE, "ES256 signature has r or s zero")
            cast(ec.EllipticCurvePublicKey, key).verify(encode_dss_signature(r, s), jws.signing_input, _ECDSA_SHA256)
        else:
            rsa_key = cast(rsa.RSAPublicKey, key)
            size = (rsa_key.key_size + 7) // 8
            if len(signature) != size:
                raise JoseError(Reason.BAD_SIGNATURE, f"RS256 signature must be {size} bytes, got {len(signature)}")
            rsa_key.verify(signature, jws.signing_input, _PKCS1V15, _SHA256)
    except InvalidSignature:
        raise JoseError(Reason.BAD_SIGNATURE, "signature does not verify with the issuer's key") from None


# --------------------------------------------------------------------------- token class checks


def require_typ(jws: Jws, accepted: frozenset[str | None], *, ignore_case: bool = False) -> None:
    """The header ``typ`` is one of ``accepted`` (``None`` in it allows an absent ``typ``).

    Each token class accepts exactly its own ``typ`` (DESIGN rule 4, RFC 8725 3.11): an ID
    token presented as an access token, or an access token as a client assertion, stops
    here. ``ignore_case`` compares media types case-insensitively (RFC 7515 4.1.9), for
    tokens other parties mint; our own tokens are compared exactly.
    """
    typ = jws.typ
    if typ is not None and ignore_case:
        typ = typ.lower()
    if typ not in accepted:
        shown = typ[:40] if isinstance(typ, str) else "absent"
        raise JoseError(Reason.BAD_TYP, f"typ {shown!r} is not accepted here")


def key_by_kid(jws: Jws, keys: Mapping[str, tuple[str, object]], where: str) -> object:
    """The key of ``keys`` (kid -> (alg, public key)) that the header's ``kid`` names, for its ``alg``.

    A ``kid`` is required and is only a dictionary key (THREAT-MODEL JWT-04); the key's own
    algorithm must be the header's (JWT-03). ``where`` names the key set in the detail.
    """
    if jws.kid is None:
        raise JoseError(Reason.KID_REQUIRED, f"the token names no kid; {where} requires one")
    found = keys.get(jws.kid)
    if found is None:
        raise JoseError(Reason.KEY_NOT_FOUND, f"kid is not a key of {where}")
    alg, key = found
    if alg != jws.alg:
        raise JoseError(Reason.BAD_ALG, f"the key of {where} is for {alg}, the token says {jws.alg}")
    return key
