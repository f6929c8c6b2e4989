"""Reading and judging an upstream OpenID Provider's discovery document (OIDC Discovery 1.0).

The document is fetched from ``<issuer>/.well-known/openid-configuration`` (a trailing
``/`` of the configured issuer dropped first, Discovery section 4) with the bounds of
:mod:`broker.login.upstream_http`. We refuse to use an upstream (THREAT-MODEL RP-05) when:

- its ``issuer`` is not exactly, as a whole case-sensitive string, the configured issuer
  (Discovery 4.3: a document for another issuer must not be used);
- an endpoint we call (``authorization_endpoint``, ``token_endpoint``, ``userinfo_endpoint``,
  ``jwks_uri``) is not a URL we may fetch (https; http only to loopback when allowed) or is
  not on the issuer's own origin (scheme, host and port): a document pointing the token
  endpoint or the keys at another host is treated as substituted, and nothing is sent there;
- it says it supports neither ``code`` responses nor PKCE ``S256`` when it lists those;
- it cannot take our client authentication (``token_endpoint_auth_methods_supported``).

A judged document becomes an immutable :class:`UpstreamMetadata`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.util import parse_url

from broker.errors import BrokerError
from broker.login.settings import ConnectorSettings
from broker.login.upstream_http import HttpLimits, UpstreamHttpError, exchange, require_json
from broker.trust.fetch import FetchError, check_url

WELL_KNOWN = "/.well-known/openid-configuration"
DEFAULT_PORTS = {"https": 443, "http": 80}


class DiscoveryError(BrokerError):
    """The upstream cannot be used; ``reason`` is machine-readable, the message says why."""

    status = 502
    code = "upstream_discovery_failed"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class UpstreamMetadata:
    """What we use of an upstream's discovery document, after every check."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    iss_parameter_supported: bool  # RFC 9207: then every authorization response must carry iss
    token_auth_method: str  # how we authenticate at the token endpoint


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + WELL_KNOWN


def limits_of(connector: ConnectorSettings, allow_http_loopback: bool, max_json_depth: int) -> HttpLimits:
    """The bounds of every exchange with this connector's upstream."""
    return HttpLimits(
        timeout_seconds=connector.timeout_seconds,
        max_bytes=connector.max_response_bytes,
        allow_http_loopback=allow_http_loopback,
        max_json_depth=max_json_depth,
    )


def discover(connector: ConnectorSettings, own_issuer: str, limits: HttpLimits) -> UpstreamMetadata:
    """Fetch and judge the connector's discovery document; :class:`DiscoveryError` if unusable."""
    issuer = connector.issuer or ""
    if issuer == own_issuer:
        raise DiscoveryError("own_issuer", "an upstream cannot be this broker itself")
    try:
        response = exchange("GET", discovery_url(issuer), limits)
        document = require_json(response, limits.max_json_depth, "the discovery endpoint")
    except UpstreamHttpError as exc:
        raise DiscoveryError(f"discovery_{exc.reason}", exc.detail) from None
    return judge(document, connector, limits.allow_http_loopback)


def judge(document: dict[str, Any], connector: ConnectorSettings, allow_http_loopback: bool) -> UpstreamMetadata:
    """Check a parsed discovery document against the connector (see the module docstring)."""
    issuer = connector.issuer or ""
    if document.get("issuer") != issuer:
        raise DiscoveryError("issuer_mismatch", "the discovery document names another issuer than the configured one")
    origin = _origin(issuer, allow_http_loopback, "issuer")
    endpoints: dict[str, str | None] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        value = document.get(name)
        if value is None and name == "userinfo_endpoint":
            endpoints[name] = None
            continue
        if not isinstance(value, str):
            raise DiscoveryError("missing_endpoint", f"{name} is missing or not a string")
        if _origin(value, allow_http_loopback, name) != origin:
            raise DiscoveryError("foreign_endpoint", f"{name} is not on the issuer's own origin")
        endpoints[name] = value
    _require_listed(document, "response_types_supported", "code")
    _require_listed(document, "code_challenge_methods_supported", "S256")
    return UpstreamMetadata(
        issuer=issuer,
        authorization_endpoint=str(endpoints["authorization_endpoint"]),
        token_endpoint=str(endpoints["token_endpoint"]),
        jwks_uri=str(endpoints["jwks_uri"]),
        userinfo_endpoint=endpoints["userinfo_endpoint"],
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported") is True,
        token_auth_method=_auth_method(document, connector),
    )


def _origin(url: str, allow_http_loopback: bool, name: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL we may fetch, else :class:`DiscoveryError` naming the field."""
    try:
        check_url(url, allow_http_loopback)
        parts = parse_url(url)
    except (FetchError, urllib3.exceptions.LocationParseError) as exc:
        raise DiscoveryError("bad_endpoint", f"{name}: {exc}") from None
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.host or "").lower(), parts.port or DEFAULT_PORTS[scheme]


def _require_listed(document: dict[str, Any], name: str, needed: str) -> None:
    """When the document lists ``name``, it must be a list of strings holding ``needed``."""
    if name not in document:
        return
    listed = document[name]
    if not isinstance(listed, list) or needed not in listed:
        raise DiscoveryError("unsupported", f"{name} does not list {needed}")


def _auth_method(document: dict[str, Any], connector: ConnectorSettings) -> str:
    """client_secret_basic when possible, else client_secret_post; ``none`` without a secret."""
    if not connector.client_secret:
        return "none"
    methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    if not isinstance(methods, list):
        raise DiscoveryError("unsupported", "token_endpoint_auth_methods_supported is not a list")
    for method in ("client_secret_basic", "client_secret_post"):
        if method in methods:
            return method
    raise DiscoveryError("unsupported", "the upstream takes neither client_secret_basic nor client_secret_post")
