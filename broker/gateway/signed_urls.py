"""Short-lived signed URLs for DRS access (THREAT-MODEL PX-18).

``GET /ga4gh/drs/v1/objects/{id}/access/https`` authorises the caller once and hands back
a URL to the streaming route carrying ``expires`` and ``signature``: an HMAC-SHA256 over
the method, dataset, canonical object path and expiry, with a key only the gateway
holds. The streaming route recomputes it on the *canonical* key it decoded itself, so a
signature for one object never opens another, and compares in constant time. Lifetimes
are capped at five minutes by settings; a GET URL also serves HEAD (same resource, no body).

A URL minted for a request that declared a data-use purpose carries it as a third parameter,
``purpose``, and the purpose is part of the signed message (under another label, so a URL
with its ``purpose`` removed or changed no longer verifies): the purpose the policy allowed
is the one the URL stands for, and the one the audit log records when it is used.

The key comes from settings (``gateway.url_signing_key``) or is generated once in the
data directory (0600, created exclusively so concurrent workers agree on one key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from broker.errors import BrokerError
from broker.gateway.paths import ObjectRef

KEY_FILE = "url-signing.key"
PARAMS = frozenset({"expires", "signature"})
PURPOSE_PARAM = "purpose"
#: Every parameter name that makes a data request a signed-URL request.
ALL_PARAMS = PARAMS | {PURPOSE_PARAM}
_MAX_PURPOSE_CHARS = 64  # checked before any MAC; the minted value is shorter (a DUO/MONDO CURIE)
_MALFORMED = "A signed URL carries exactly 'expires' and 'signature' (and 'purpose' if one was declared)."


@dataclass(frozen=True)
class VerifiedUrl:
    """What a valid signed URL stands for: its expiry and the purpose it was minted for."""

    expires: int
    purpose: str | None


class SignatureError(BrokerError):
    """A signed URL that is malformed, expired or forged (403 with ``code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, status=403, code=code)


def load_or_create_key(configured: str | None, directory: Path | None) -> bytes:
    """The signing key: from settings, else from (or newly into) ``directory/url-signing.key``."""
    if configured:
        return hashlib.sha256(b"ga4gh-broker gateway url key\0" + configured.encode("utf-8")).digest()
    if directory is None:
        # No place to keep a key: a per-process key still works for one process.
        return secrets.token_bytes(32)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEY_FILE
    if not path.exists():
        # Written whole to a private temporary file, then linked into place: a process starting
        # at the same moment sees either no key or the whole key, never a half-written file.
        key = secrets.token_bytes(32)
        temporary = directory / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
            return key
        except FileExistsError:
            pass  # another process linked its key first: use that one
        finally:
            temporary.unlink(missing_ok=True)
    data = path.read_bytes()
    if len(data) != 32:
        raise ValueError(f"{path} is not a 32-byte key")
    return data


def _mac(key: bytes, method: str, ref: ObjectRef, expires: int, purpose: str | None = None) -> str:
    fields = [method, ref.dataset, ref.path, str(expires)]
    if purpose is None:
        message = "\n".join(("ga4gh-broker-signed-url-v1", *fields))
    else:
        message = "\n".join(("ga4gh-broker-signed-url-purpose-v1", *fields, purpose))
    digest = hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(key: bytes, ref: ObjectRef, expires: int, method: str = "GET", purpose: str | None = None) -> str:
    """The query string (without '?') that makes the data URL of ``ref`` valid until ``expires``.

    ``purpose`` (an already validated DUO/MONDO CURIE, which needs no percent-encoding in a
    query) is bound into the signature.
    """
    mac = _mac(key, method, ref, expires, purpose)
    if purpose is None:
        return f"expires={expires}&signature={mac}"
    return f"expires={expires}&{PURPOSE_PARAM}={purpose}&signature={mac}"


def verify(key: bytes, ref: ObjectRef, query: str, method: str, now: int, max_lifetime: int) -> int:
    """Check a signed-URL query for ``ref``; return its expiry or raise :class:`SignatureError`."""
    return verify_url(key, ref, query, method, now, max_lifetime).expires


def verify_url(key: bytes, ref: ObjectRef, query: str, method: str, now: int, max_lifetime: int) -> VerifiedUrl:
    """Check a signed-URL query for ``ref``; return what it stands for or raise :class:`SignatureError`.

    An expiry further away than ``max_lifetime`` is refused even with a valid signature.
    """
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, max_num_fields=4)
    except ValueError:  # more fields than a signed URL has: refused, never a 500
        raise SignatureError("invalid_signed_url", _MALFORMED) from None
    names = sorted(name for name, _ in pairs)
    if names != sorted(PARAMS) and names != sorted(ALL_PARAMS):
        raise SignatureError("invalid_signed_url", _MALFORMED)
    values = dict(pairs)
    expires_text = values["expires"]
    if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
        raise SignatureError("invalid_signed_url", "The signed URL's expiry is not a number.")
    purpose = values.get(PURPOSE_PARAM)
    if purpose is not None and (not purpose or len(purpose) > _MAX_PURPOSE_CHARS):
        raise SignatureError("invalid_signed_url", "The signed URL's purpose is malformed.")
    expires = int(expires_text)
    signed_method = "GET" if method == "HEAD" else method
    expected = _mac(key, signed_method, ref, expires, purpose)
    if not hmac.compare_digest(expected.encode("ascii"), values["signature"].encode("utf-8", "replace")):
        raise SignatureError("bad_signature", "The signed URL's signature does not match this object.")
    if expires < now:
        raise SignatureError("expired_signed_url", "The signed URL has expired.")
    if expires > now + max_lifetime:
        raise SignatureError("invalid_signed_url", "The signed URL lives longer than this gateway allows.")
    return VerifiedUrl(expires, purpose)
