"""The JWKS fetcher: one bounded GET of an allow-listed URL (THREAT-MODEL JWT-08).

Callers only ever hand it URLs that passed the exact allow-list check (the caller's job, done
before this module is reached). The request itself goes through :mod:`broker.net.http`, the
broker's one bounded outbound client (https only, loopback http only when allowed, no
redirects, connect/read/total time bounds, size bound, identity encoding only, nothing taken
from the environment). What is JWKS-specific is here: the media type (``application/json`` or
``application/jwk-set+json``), strict JSON (:func:`broker.trust.keyset.decode_json`) and at most
``max_keys`` keys, and the reasons reported as :class:`FetchError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from broker.errors import BrokerError
from broker.net import http as net
from broker.trust.keyset import MEDIA_TYPES, JwksFormatError, KeySet, decode_json, parse_jwks
from broker.trust.settings import JwksFetchSettings

USER_AGENT = "ga4gh-broker-jwks-fetcher"
#: The shared pieces, from their one home (kept importable here for callers not yet moved).
new_session = net.new_session
is_loopback_host = net.is_loopback_host


class FetchError(BrokerError):
    """A JWKS (or another document) could not be fetched or used; the message says why (never the body)."""

    status = 502
    code = "fetch_failed"


class BoundedReadError(BrokerError):
    """A response body refused while reading it; ``kind`` is compressed, bad_length, too_large or timeout."""

    status = 502
    code = "fetch_failed"

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def check_url(url: object, allow_http_loopback: bool) -> str:
    """:func:`broker.net.http.check_url`, failing with :class:`FetchError`."""
    try:
        return net.check_url(url, allow_http_loopback)
    except net.NetError as exc:
        raise FetchError(exc.detail) from None


def read_bounded(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    """:func:`broker.net.http.read_bounded`, failing with :class:`BoundedReadError`."""
    try:
        return net.read_bounded(response, max_bytes, deadline)
    except net.NetError as exc:
        raise BoundedReadError(exc.reason, exc.detail) from None


@dataclass(frozen=True)
class FetchResult:
    """A fetched, parsed JWK Set and how big its body was."""

    url: str
    keyset: KeySet
    body_bytes: int


def fetch_jwks(url: str, settings: JwksFetchSettings, session: requests.Session | None = None) -> FetchResult:
    """GET ``url`` under every bound of the module docstring and parse it; :class:`FetchError` on any failure.

    ``session`` carries TLS trust (``session.verify``): tests hand in one trusting their own CA.
    """
    limits = net.Limits(
        connect_seconds=settings.connect_timeout_seconds,
        read_seconds=settings.read_timeout_seconds,
        total_seconds=settings.connect_timeout_seconds + settings.read_timeout_seconds,
        max_bytes=settings.max_bytes,
        allow_http_loopback=settings.allow_http_loopback,
    )
    client = net.HttpClient(session if session is not None else new_session(), USER_AGENT)
    try:
        reply = client.request("GET", url, limits, accept="application/jwk-set+json, application/json")
    except net.NetError as exc:
        raise FetchError(_describe(exc, settings)) from None
    if 300 <= reply.status < 400:
        raise FetchError(f"HTTP {reply.status} redirect: not followed")
    if reply.status != 200:
        raise FetchError(f"HTTP {reply.status}")
    if reply.media_type not in MEDIA_TYPES:
        shown = reply.media_type[:60] if reply.media_type else "none"
        raise FetchError(f"Content-Type {shown!r} is not application/json or application/jwk-set+json")
    try:
        keyset = parse_jwks(decode_json(reply.body), settings.max_keys)
    except JwksFormatError as exc:
        raise FetchError(str(exc)) from None
    return FetchResult(url=url, keyset=keyset, body_bytes=len(reply.body))


def _describe(exc: net.NetError, settings: JwksFetchSettings) -> str:
    if exc.reason == "timeout" and "connect" in exc.detail:
        return f"connect timed out after {settings.connect_timeout_seconds} s"
    if exc.reason == "timeout":
        return f"read timed out ({exc.detail})"
    return exc.detail
