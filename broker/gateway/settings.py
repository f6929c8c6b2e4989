"""Gateway settings: data stores, datasets, enforcement modes and bounds.

Declared as frozen dataclasses in the style of :mod:`broker.config`, so the same loader
(``broker.config._build``) validates types and names (this module imports nothing from
``broker.config`` at import time, so ``Settings`` can hold a ``gateway`` section); :func:`check_gateway` adds the
cross-field rules a type cannot say (a dataset names an existing store, a base URL is
http(s), a header name is a token, ...). It runs at start: a gateway with a broken
configuration refuses to start rather than serving something half-configured.

Layout (YAML)::

    gateway:
      mode: stream                 # or offload (X-Accel-Redirect to nginx)
      stores:
        local: {kind: directory, path: /srv/genomes}
        archive:
          kind: http
          base_url: http://10.0.0.5:8081/objects/
          headers: {X-Api-Key: "..."}          # secret: injected by the gateway
      datasets:
        ds1: {store: local, prefix: cohort1}
        ds2: {store: archive, prefix: ds2, mode: offload}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from broker.gateway.paths import DATASET_ID, PathError, validate_object_path

Mode = Literal["stream", "offload"]

# RFC 9110 section 5.6.2 token: the only shape a header name may have.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A header value we are willing to send: visible ASCII, space and tab only (no CR, LF, NUL).
_FIELD_VALUE = re.compile(r"[\x20-\x7e\t]*")
# Request headers the gateway itself decides; an upstream credential header may not reuse them.
_RESERVED_UPSTREAM_HEADERS = frozenset(
    {
        "host",
        "range",
        "if-range",
        "if-none-match",
        "if-modified-since",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "accept-encoding",
        "cookie",
        "proxy-authorization",
        "keep-alive",
        "trailer",
    }
)
MAX_SIGNED_URL_LIFETIME = 300  # THREAT-MODEL PX-18: a signed URL lives five minutes at most


@dataclass(frozen=True)
class DataStoreSettings:
    """Where bytes live: a local folder (``directory``) or an HTTP server (``http``)."""

    kind: Literal["directory", "http"]
    path: str | None = None  # directory: the folder
    base_url: str | None = None  # http: objects are base_url + dataset prefix + object path
    # Credentials for the upstream, sent by the gateway on every request to it (never the client's).
    headers: dict[str, str] | None = field(default=None, metadata={"secret": True}, repr=False)
    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 30.0
    # offload mode: the internal nginx location that serves this store (see examples/nginx/).
    offload_location: str | None = None


@dataclass(frozen=True)
class DatasetSettings:
    """A dataset: which store holds it, under which prefix, served how."""

    store: str
    prefix: str = ""  # folder (or URL path) inside the store; objects never leave it
    mode: Mode | None = None  # None: the gateway-wide mode
    drs: bool = True  # listed as DRS objects


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the data gateway needs; the defaults serve nothing until datasets are set."""

    mode: Mode = "stream"
    realm: str = "ga4gh-broker"
    stores: dict[str, DataStoreSettings] = field(default_factory=dict)
    datasets: dict[str, DatasetSettings] = field(default_factory=dict)
    # RFC 9110 section 14.2: a cap on ranges per request (more is refused with 416).
    max_ranges: int = 16
    max_range_header_bytes: int = 1024
    chunk_bytes: int = 262_144
    # 403 bodies may carry the policy's "required visas" document (what would grant access).
    expose_required_visas: bool = True
    # DRS signed URLs: lifetime and key (default: generated in <data_dir>/gateway/url-signing.key).
    signed_url_lifetime_seconds: int = 120
    url_signing_key: str | None = field(default=None, metadata={"secret": True}, repr=False)
    # Absolute URLs we hand out (DRS access URLs) start with this; default: the request's own root.
    public_base_url: str | None = None
    drs_max_passports: int = 10
    drs_service_id: str = "org.ga4gh-broker.drs"
    drs_organization_name: str = "ga4gh-broker"
    drs_organization_url: str = "https://example.org/"
    # The decision endpoint expects original URIs shaped like the streaming route.
    decision_prefix: str = "/data/"
    # Browser genome viewers: exact origins allowed to read with credentials (no wildcard).
    cors_origins: list[str] = field(default_factory=list)
    metrics: bool = True
    # /metrics needs this bearer token when set; unset, it answers loopback peers only.
    metrics_token: str | None = field(default=None, metadata={"secret": True}, repr=False)
    # Where sha-256 checksums are cached across processes (default <data_dir>/gateway/checksums).
    checksum_cache_dir: str | None = None


def parse_gateway_settings(raw: dict[str, Any] | None, source: str = "<gateway>") -> GatewaySettings:
    """Build and check GatewaySettings from plain data (a YAML ``gateway:`` mapping)."""
    from broker.config import _build

    settings = _build(GatewaySettings, raw or {}, source, "gateway")
    check_gateway(settings, source)
    return settings


def check_gateway(s: GatewaySettings, source: str = "<gateway>") -> None:
    """Cross-field rules; raises :class:`broker.config.SettingsError` naming the key."""
    from broker.config import SettingsError

    positive = {
        "max_ranges": s.max_ranges,
        "max_range_header_bytes": s.max_range_header_bytes,
        "chunk_bytes": s.chunk_bytes,
        "signed_url_lifetime_seconds": s.signed_url_lifetime_seconds,
        "drs_max_passports": s.drs_max_passports,
    }
    for key, value in positive.items():
        if value <= 0:
            raise SettingsError(source, f"gateway.{key}", f"expected a number greater than 0, got {value!r}")
    if s.signed_url_lifetime_seconds > MAX_SIGNED_URL_LIFETIME:
        raise SettingsError(
            source, "gateway.signed_url_lifetime_seconds", f"expected at most {MAX_SIGNED_URL_LIFETIME} seconds"
        )
    if s.url_signing_key is not None and len(s.url_signing_key) < 32:
        raise SettingsError(source, "gateway.url_signing_key", "expected at least 32 characters of secret")
    if not _FIELD_VALUE.fullmatch(s.realm) or '"' in s.realm or "\\" in s.realm:
        raise SettingsError(source, "gateway.realm", "expected printable ASCII without quotes or backslashes")
    if not (s.decision_prefix.startswith("/") and s.decision_prefix.endswith("/")):
        raise SettingsError(source, "gateway.decision_prefix", "expected a path starting and ending with '/'")
    if s.public_base_url is not None and not s.public_base_url.startswith(("https://", "http://")):
        raise SettingsError(source, "gateway.public_base_url", "expected an http(s) URL")
    for i, origin in enumerate(s.cors_origins):
        if origin == "*" or not origin.startswith(("https://", "http://")) or origin.endswith("/"):
            raise SettingsError(
                source,
                f"gateway.cors_origins[{i}]",
                "expected an exact origin like https://viewer.example (no wildcard, no path)",
            )
    for name, store in s.stores.items():
        _check_store(name, store, source)
    for name, ds in s.datasets.items():
        key = f"gateway.datasets.{name}"
        if not DATASET_ID.fullmatch(name):
            raise SettingsError(source, key, "dataset ids are 1-128 characters of A-Z a-z 0-9 . _ ~ -")
        if ds.store not in s.stores:
            raise SettingsError(source, f"{key}.store", f"no store named {ds.store!r} in gateway.stores")
        if ds.prefix:
            try:
                validate_object_path(ds.prefix)
            except PathError as exc:
                raise SettingsError(source, f"{key}.prefix", exc.message) from None
        mode = ds.mode or s.mode
        if mode == "offload" and not s.stores[ds.store].offload_location:
            raise SettingsError(
                source,
                f"{key}.mode",
                f"offload needs gateway.stores.{ds.store}.offload_location (an internal nginx location)",
            )


def _check_store(name: str, store: DataStoreSettings, source: str) -> None:
    from broker.config import SettingsError

    key = f"gateway.stores.{name}"
    if not DATASET_ID.fullmatch(name):
        raise SettingsError(source, key, "store names are 1-128 characters of A-Z a-z 0-9 . _ ~ -")
    if store.kind == "directory":
        if not store.path:
            raise SettingsError(source, f"{key}.path", "a directory store needs a path")
        if store.base_url or store.headers:
            raise SettingsError(source, key, "base_url and headers belong to http stores")
    else:
        if not store.base_url or not store.base_url.startswith(("http://", "https://")):
            raise SettingsError(source, f"{key}.base_url", "an http store needs an http(s) base_url")
        if any(c in store.base_url for c in "?#") or not _FIELD_VALUE.fullmatch(store.base_url):
            raise SettingsError(source, f"{key}.base_url", "expected a URL without query, fragment or spaces")
        for header, value in (store.headers or {}).items():
            if not _TOKEN.fullmatch(header) or header.lower() in _RESERVED_UPSTREAM_HEADERS:
                raise SettingsError(source, f"{key}.headers.{header}", "not a header the gateway may inject")
            if not isinstance(value, str) or not _FIELD_VALUE.fullmatch(value):
                raise SettingsError(source, f"{key}.headers.{header}", "expected printable ASCII (no CR, LF, NUL)")
    if store.connect_timeout_seconds <= 0 or store.read_timeout_seconds <= 0:
        raise SettingsError(source, key, "timeouts must be greater than 0")
    loc = store.offload_location
    if loc is not None and not (
        loc.startswith("/")
        and loc.endswith("/")
        and _FIELD_VALUE.fullmatch(loc)
        and " " not in loc
        and "?" not in loc
        and "%" not in loc
    ):
        raise SettingsError(source, f"{key}.offload_location", "expected an absolute path ending with '/'")
