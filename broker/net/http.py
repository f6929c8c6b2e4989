"""The one bounded outbound HTTP client: every request the broker makes to another party.

JWKS fetches (:mod:`broker.trust.fetch`), upstream OpenID discovery, token and userinfo calls
(:mod:`broker.login`), remote visa sources (:mod:`broker.visas.remote`) and the gateway's http
data store all go through here. Whoever runs the other end (or its DNS, or a network in
between) may misbehave; a call must then fail quickly and cleanly with a reason, never hang a
worker, fill its memory or connect somewhere a token chose. So every exchange is fenced:

- **URL** (:func:`check_url`, checked right before each request): https; plain http only to a
  loopback host (127.0.0.0/8, ``::1``, ``localhost``) and only when the caller allows it; no
  userinfo, fragment, backslash, whitespace, control or non-ASCII character, so the string we
  checked is the place the client connects to (THREAT-MODEL JWT-07: ``urlsplit`` and urllib3
  disagree on ``https://evil\\@good/``; we judge with urllib3's parser, the one that connects,
  and refuse the ambiguous characters outright).
- **Environment** (:func:`new_session`): proxy variables and ``.netrc`` are ignored and no
  cookie is kept, so no credential is attached to a request unless the caller adds it.
- **Redirects** are never followed; a 3xx is handed back (or refused, for JSON calls).
- **Time**: a connect timeout, a read timeout per socket read, and a deadline for the whole
  exchange. :meth:`HttpClient.request` runs the request in its own thread and waits at most
  until the deadline, so a server that drips its headers (which no socket timeout bounds) is
  abandoned; the abandoned thread ends at its next socket timeout.
- **Size** (:func:`read_bounded`): a ``Content-Length`` above the limit is refused before
  reading, the body is read in pieces and dropped as soon as it passes the limit, and only
  ``Content-Encoding: identity`` is accepted, so nothing is ever decompressed.

Failures are :class:`NetError` with a machine-readable ``reason`` (``bad_url``, ``timeout``,
``connection``, ``tls``, ``redirect``, ``too_large``, ``compressed``, ``bad_length``,
``bad_status``, ``bad_content_type``, ``bad_json``); messages never carry a body, a token or
a secret.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from urllib3.util import parse_url

from broker.core.jose import JoseError, loads_strict
from broker.errors import BrokerError

MAX_URL_CHARS = 2048
READ_PIECE = 16_384
USER_AGENT = "ga4gh-broker"
#: How much longer than an exchange's own deadline the caller waits for its thread.
WAIT_MARGIN_SECONDS = 0.5


class NetError(BrokerError):
    """An outbound exchange failed; ``reason`` is machine-readable, ``detail`` for a person."""

    status = 502
    code = "upstream_failed"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    """Bounds of one exchange.

    ``connect_seconds`` to connect, ``read_seconds`` per socket read, ``total_seconds`` for the
    whole exchange (headers and body), at most ``max_bytes`` of body (None: unbounded, for
    streamed data the caller relays as it reads), plain http to loopback only when
    ``allow_http_loopback``. ``allow_plain_http`` allows plain http to any host: only for an
    endpoint the operator configured by its full address (a data store on a private network),
    never for a URL that comes from a token or another party's document.
    """

    connect_seconds: float
    read_seconds: float
    total_seconds: float
    max_bytes: int | None
    allow_http_loopback: bool = False
    max_json_depth: int = 16
    allow_plain_http: bool = False

    @classmethod
    def simple(
        cls, timeout_seconds: float, max_bytes: int, allow_http_loopback: bool = False, max_json_depth: int = 16
    ) -> Limits:
        """One number for every time bound (connect, each read, the whole exchange)."""
        return cls(timeout_seconds, timeout_seconds, timeout_seconds, max_bytes, allow_http_loopback, max_json_depth)


@dataclass(frozen=True)
class Reply:
    """A response read within the limits: status, media type (lower case, no parameters), headers, body."""

    status: int
    media_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json_object(self, max_depth: int = 16, what: str = "response") -> dict[str, Any]:
        """The body as a strict JSON object (no duplicate members, bounded depth); else ``bad_json``."""
        try:
            value = loads_strict(self.body, max_depth, what)
        except JoseError as exc:
            raise NetError("bad_json", exc.detail) from None
        if not isinstance(value, dict):
            raise NetError("bad_json", f"the {what} is not a JSON object")
        return value


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


def check_url(url: object, allow_http_loopback: bool, allow_plain_http: bool = False) -> str:
    """``url`` if we may request it, else :class:`NetError` (``bad_url``) saying why.

    Used both when settings are loaded (so a bad URL stops the start) and right before each
    request. ``allow_plain_http``: see :class:`Limits`.
    """

    def bad(why: str) -> NetError:
        return NetError("bad_url", why)

    if not isinstance(url, str) or not url:
        raise bad("the URL is not a non-empty string")
    if len(url) > MAX_URL_CHARS:
        raise bad(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise bad("the URL contains whitespace, a control character or a backslash")
    if not url.isascii():
        raise bad("the URL contains non-ASCII characters (write the host in punycode)")
    try:
        parts = parse_url(url)
    except urllib3.exceptions.LocationParseError:
        raise bad("the URL cannot be parsed") from None
    scheme = (parts.scheme or "").lower()
    if scheme not in ("https", "http") or not url.lower().startswith(scheme + "://"):
        raise bad("the URL must be https://")
    if not parts.host:
        raise bad("the URL has no host")
    if parts.auth is not None or "@" in (parts.netloc or ""):
        raise bad("the URL must not carry userinfo (user@host)")
    if parts.fragment is not None:
        raise bad("the URL must not carry a fragment")
    if scheme == "http" and not allow_plain_http:
        if not is_loopback_host(parts.host):
            raise bad("plain http is refused (https only; http only for loopback hosts)")
        if not allow_http_loopback:
            raise bad("plain http to loopback is refused unless trust.fetch.allow_http_loopback is true")
    return url


def new_session(pool_size: int | None = None) -> requests.Session:
    """A session that takes nothing from the environment: no proxies, no ``.netrc``, no cookies.

    ``pool_size`` sizes its connection pool (the gateway keeps connections to a data store open).
    """
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    if pool_size is not None:
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def read_bounded(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    """The body of ``response`` (opened with ``stream=True``): identity encoding only, at most
    ``max_bytes`` (checked on Content-Length and while reading), read before ``deadline`` (a
    ``time.monotonic`` value), so a slow drip cannot hold a caller past it."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise NetError("compressed", "compressed body refused (Content-Encoding must be identity)")
    declared = response.headers.get("Content-Length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise NetError("bad_length", "invalid Content-Length")
        if int(declared) > max_bytes:
            raise NetError("too_large", f"body of {int(declared)} bytes exceeds the limit of {max_bytes}")
    pieces: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise NetError("timeout", "body not received in time (read deadline passed)")
        piece = response.raw.read1(READ_PIECE, decode_content=False)
        if not piece:
            return b"".join(pieces)
        total += len(piece)
        if total > max_bytes:
            raise NetError("too_large", f"body exceeds the limit of {max_bytes} bytes")
        pieces.append(piece)


def media_type(response: requests.Response) -> str:
    """The response's media type, lower case, without parameters ('' when absent)."""
    return str(response.headers.get("Content-Type", "")).split(";", 1)[0].strip().lower()


@contextmanager
def translated_failures(limits: Limits) -> Iterator[None]:
    """Turn every failure of ``requests``/urllib3 inside the block into a :class:`NetError` with its reason."""
    try:
        yield
    except NetError:
        raise
    except requests.exceptions.SSLError:
        raise NetError("tls", "TLS failure (certificate not trusted or handshake failed)") from None
    except requests.exceptions.ConnectTimeout:
        raise NetError("timeout", f"connect timed out after {limits.connect_seconds} s") from None
    except (requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        raise NetError("timeout", f"no answer within {limits.read_seconds} s") from None
    except requests.exceptions.ConnectionError:
        raise NetError("connection", "connection failed") from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise NetError("connection", f"request failed ({exc.__class__.__name__})") from None


class HttpClient:
    """Bounded requests over one session (see the module docstring); safe to share between threads.

    ``session`` carries TLS trust (``session.verify``): tests hand in one trusting their own CA.
    """

    def __init__(self, session: requests.Session | None = None, user_agent: str = USER_AGENT) -> None:
        self.session = session if session is not None else new_session()
        self.user_agent = user_agent

    def request(
        self,
        method: str,
        url: str,
        limits: Limits,
        *,
        headers: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        accept: str = "application/json",
    ) -> Reply:
        """One bounded exchange, whole within ``limits.total_seconds``; any status is returned."""
        check_url(url, limits.allow_http_loopback, limits.allow_plain_http)
        outcome: Future[Reply] = Future()
        deadline = time.monotonic() + limits.total_seconds
        sent = {"Accept": accept, "Accept-Encoding": "identity", "User-Agent": self.user_agent, **(headers or {})}

        def run() -> None:
            try:
                outcome.set_result(self._exchange(method, url, limits, sent, form, deadline))
            except BaseException as exc:  # handed to the waiting caller, never lost
                outcome.set_exception(exc)

        threading.Thread(target=run, name="net-http", daemon=True).start()
        try:
            return outcome.result(timeout=limits.total_seconds + WAIT_MARGIN_SECONDS)
        except FutureTimeout:
            raise NetError("timeout", f"no complete answer within {limits.total_seconds} s") from None

    def _exchange(
        self,
        method: str,
        url: str,
        limits: Limits,
        headers: Mapping[str, str],
        form: Mapping[str, str] | None,
        deadline: float,
    ) -> Reply:
        with (
            translated_failures(limits),
            self.session.request(
                method,
                url,
                data=dict(form) if form is not None else None,
                headers=dict(headers),
                allow_redirects=False,
                stream=True,
                timeout=(limits.connect_seconds, limits.read_seconds),
            ) as response,
        ):
            max_bytes = limits.max_bytes if limits.max_bytes is not None else 2**62
            body = read_bounded(response, max_bytes, deadline)
            return Reply(response.status_code, media_type(response), body, dict(response.headers))

    def json(
        self,
        method: str,
        url: str,
        limits: Limits,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        media_types: tuple[str, ...] = ("application/json",),
    ) -> dict[str, Any]:
        """A 200 JSON object of one of ``media_types``, else :class:`NetError` naming ``what``."""
        reply = self.request(method, url, limits, headers=headers, form=form, accept=", ".join(media_types))
        if 300 <= reply.status < 400:
            raise NetError("redirect", f"{what} answered HTTP {reply.status} redirect: not followed")
        if reply.status != 200:
            raise NetError("bad_status", f"{what} answered HTTP {reply.status}")
        if reply.media_type not in media_types:
            shown = reply.media_type[:60] or "none"
            raise NetError(
                "bad_content_type", f"{what} answered Content-Type {shown!r}, not {' or '.join(media_types)}"
            )
        return reply.json_object(limits.max_json_depth, what)

    def open(
        self, method: str, url: str, limits: Limits, *, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """An open streamed response, for relaying a large body; the caller reads and closes it.

        The URL rules, environment and redirect rules apply and failures to connect or to get
        the headers are :class:`NetError`; the caller reads the body with its own bounds
        (``limits.max_bytes`` and ``total_seconds`` are not applied).
        """
        check_url(url, limits.allow_http_loopback, limits.allow_plain_http)
        sent = {"Accept-Encoding": "identity", "User-Agent": self.user_agent, **(headers or {})}
        with translated_failures(limits):
            return self.session.request(
                method,
                url,
                headers=sent,
                allow_redirects=False,
                stream=True,
                timeout=(limits.connect_seconds, limits.read_seconds),
            )
