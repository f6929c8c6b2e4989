"""The hardened JWKS fetcher: one bounded HTTPS GET of an allow-listed URL (THREAT-MODEL JWT-08).

Callers only ever hand it URLs that passed the exact allow-list check (the caller's job,
done before this module is reached). Even so the fetch is fenced on every side, because
the URL's owner, or whoever controls its DNS, may turn hostile:

- scheme: https; plain http only to a loopback host (127.0.0.0/8, ::1, localhost) and only
  when ``allow_http_loopback`` is set. No userinfo, fragment, backslash, whitespace or
  control character, so the string we checked is the place ``requests`` connects to
  (JWT-07: ``urlsplit`` and urllib3 disagree on ``https://evil\\@good/``; we judge with
  urllib3's parser, the one that connects, and refuse the ambiguous characters outright).
- no redirects: a 3xx is a failure and its ``Location`` is never requested.
- time: a connect timeout, a read timeout per socket read, and a deadline for the whole
  body (a server dripping one byte a second is cut off).
- size: a ``Content-Length`` above ``max_bytes`` is refused before reading; the body is read
  in small pieces and the connection dropped as soon as it passes ``max_bytes``.
  ``Accept-Encoding: identity`` is asked and any other ``Content-Encoding`` refused, so no
  decompression bomb is ever inflated.
- content: ``Content-Type`` must be ``application/json`` or ``application/jwk-set+json``;
  the body strict JSON (keyset.decode_json); at most ``max_keys`` keys.
- environment: our own session ignores proxy variables and ``.netrc`` (``trust_env`` off)
  and keeps no cookies, so no credential is ever attached to a request.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import time
from dataclasses import dataclass

import requests
import urllib3
from urllib3.util import parse_url

from broker.errors import BrokerError
from broker.trust.keyset import MEDIA_TYPES, JwksFormatError, KeySet, decode_json, parse_jwks
from broker.trust.settings import JwksFetchSettings

MAX_URL_CHARS = 2048
_READ_PIECE = 16_384
USER_AGENT = "ga4gh-broker-jwks-fetcher"


class FetchError(BrokerError):
    """A JWKS could not be fetched or used; the message says why (never the body)."""

    status = 502
    code = "fetch_failed"


class BoundedReadError(BrokerError):
    """A response body refused while reading it; ``kind`` is compressed, bad_length, too_large or timeout."""

    status = 502
    code = "fetch_failed"

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def read_bounded(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    """The body of ``response`` (opened with stream=True): identity encoding only, at most
    ``max_bytes`` (checked on Content-Length and while reading), and read before ``deadline``
    (a time.monotonic value), so a slow drip cannot hold a caller past it.

    Every fetch of a document from another party (JWKS, upstream IdP, remote visa source)
    reads through this one function; status and media-type rules stay with each caller.
    """
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BoundedReadError("compressed", "compressed body refused (Content-Encoding must be identity)")
    declared = response.headers.get("Content-Length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BoundedReadError("bad_length", "invalid Content-Length")
        if int(declared) > max_bytes:
            raise BoundedReadError("too_large", f"body of {int(declared)} bytes exceeds the limit of {max_bytes}")
    pieces: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise BoundedReadError("timeout", "body not received in time (read deadline passed)")
        piece = response.raw.read1(_READ_PIECE, decode_content=False)
        if not piece:
            return b"".join(pieces)
        total += len(piece)
        if total > max_bytes:
            raise BoundedReadError("too_large", f"body exceeds the limit of {max_bytes} bytes")
        pieces.append(piece)


@dataclass(frozen=True)
class FetchResult:
    """A fetched, parsed JWK Set and how big its body was."""

    url: str
    keyset: KeySet
    body_bytes: int


def new_session() -> requests.Session:
    """A session for JWKS fetches: default CA store; no proxies or .netrc from the environment, no cookies."""
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and literal addresses in 127.0.0.0/8 or ``::1`` (brackets allowed)."""
    name = host.strip().lower()
    if name == "localhost":
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_url(url: object, allow_http_loopback: bool) -> str:
    """``url`` if it is a JWKS URL we may fetch, else :class:`FetchError` saying why.

    Used both when the trust configuration is loaded (so a bad URL stops the start) and
    again right before each fetch.
    """
    if not isinstance(url, str) or not url:
        raise FetchError("the URL is not a non-empty string")
    if len(url) > MAX_URL_CHARS:
        raise FetchError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise FetchError("the URL contains whitespace, a control character or a backslash")
    if not url.isascii():
        raise FetchError("the URL contains non-ASCII characters (write the host in punycode)")
    try:
        parts = parse_url(url)
    except urllib3.exceptions.LocationParseError:
        raise FetchError("the URL cannot be parsed") from None
    scheme = (parts.scheme or "").lower()
    if scheme not in ("https", "http") or not url.lower().startswith(scheme + "://"):
        raise FetchError("the URL must be https://")
    if not parts.host:
        raise FetchError("the URL has no host")
    if parts.auth is not None or "@" in (parts.netloc or ""):
        raise FetchError("the URL must not carry userinfo (user@host)")
    if parts.fragment is not None:
        raise FetchError("the URL must not carry a fragment")
    if scheme == "http":
        if not is_loopback_host(parts.host):
            raise FetchError("plain http is refused (https only; http only for loopback hosts)")
        if not allow_http_loopback:
            raise FetchError("plain http to loopback is refused unless trust.fetch.allow_http_loopback is true")
    return url


def fetch_jwks(url: str, settings: JwksFetchSettings, session: requests.Session | None = None) -> FetchResult:
    """GET ``url`` under every bound of the module docstring and parse it; :class:`FetchError` on any failure.

    ``session`` carries TLS trust (``session.verify``): tests hand in one trusting their own CA.
    """
    check_url(url, settings.allow_http_loopback)
    http = session if session is not None else new_session()
    deadline = time.monotonic() + settings.connect_timeout_seconds + settings.read_timeout_seconds
    try:
        with http.get(
            url,
            allow_redirects=False,
            stream=True,
            timeout=(settings.connect_timeout_seconds, settings.read_timeout_seconds),
            headers={
                "Accept": "application/jwk-set+json, application/json",
                "Accept-Encoding": "identity",
                "User-Agent": USER_AGENT,
            },
        ) as response:
            body = _read_body(response, settings.max_bytes, deadline)
    except requests.exceptions.SSLError:
        raise FetchError("TLS failure (certificate not trusted or handshake failed)") from None
    except requests.exceptions.ConnectTimeout:
        raise FetchError(f"connect timed out after {settings.connect_timeout_seconds} s") from None
    except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        raise FetchError(f"read timed out after {settings.read_timeout_seconds} s") from None
    except requests.exceptions.ConnectionError:
        raise FetchError("connection failed") from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise FetchError(f"request failed ({exc.__class__.__name__})") from None
    try:
        keyset = parse_jwks(decode_json(body), settings.max_keys)
    except JwksFormatError as exc:
        raise FetchError(str(exc)) from None
    return FetchResult(url=url, keyset=keyset, body_bytes=len(body))


def _read_body(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    """Check status and headers, then read at most ``max_bytes`` before ``deadline``."""
    status = response.status_code
    if 300 <= status < 400:
        raise FetchError(f"HTTP {status} redirect: not followed")
    if status != 200:
        raise FetchError(f"HTTP {status}")
    media = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media not in MEDIA_TYPES:
        shown = media[:60] if media else "none"
        raise FetchError(f"Content-Type {shown!r} is not application/json or application/jwk-set+json")
    try:
        return read_bounded(response, max_bytes, deadline)
    except BoundedReadError as exc:
        raise FetchError(str(exc)) from None
