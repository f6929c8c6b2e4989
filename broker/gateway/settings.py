"""Gateway settings: data stores, datasets, enforcement modes and bounds.

Declared as settings models (:class:`~broker.settings_model.SettingsModel`); :func:`check_gateway`
adds the cross-field rules a type cannot say (a dataset names an existing store, a base URL
is http(s), a header name is a token, ...). The settings loader runs it, so a gateway with a
broken configuration refuses to start rather than serving something half-configured.

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
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr

from broker.gateway.paths import DATASET_ID, PathError, validate_object_path
from broker.settings_model import SettingsModel, SettingsProblem

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


class DataStoreSettings(SettingsModel):
    """Where bytes live: a local folder (``directory``) or an HTTP server (``http``)."""

    kind: Literal["directory", "http"] = Field(description="directory: a local folder. http: an HTTP server.")
    path: str | None = Field(None, description="directory: the folder.")
    base_url: str | None = Field(None, description="http: objects are base_url + dataset prefix + object path.")
    headers: dict[str, SecretStr] | None = Field(
        None, description="http: credentials the gateway sends to the upstream on every request (never the client's)."
    )
    connect_timeout_seconds: float = Field(3.0, gt=0, description="http: longest wait to connect.")
    read_timeout_seconds: float = Field(30.0, gt=0, description="http: longest wait between two reads.")
    offload_location: str | None = Field(
        None, description="offload mode: the internal nginx location that serves this store (see examples/nginx/)."
    )

    def header_values(self) -> dict[str, str]:
        """The upstream credential headers, revealed (only for the request to the upstream)."""
        return {name: value.get_secret_value() for name, value in (self.headers or {}).items()}


class DatasetSettings(SettingsModel):
    """A dataset: which store holds it, under which prefix, served how."""

    store: str = Field(description="The name of a store in gateway.stores.")
    prefix: str = Field(
        "",
        description=(
            "Folder (or URL path) inside the store; objects never leave it. Unset: the whole store. "
            "Two datasets of one store may not share, nest or contain each other's prefix (compared "
            "segment by segment), else one file would be served under two policies."
        ),
    )
    mode: Mode | None = Field(None, description="stream or offload; unset: the gateway-wide mode.")
    drs: bool = Field(True, description="Listed as DRS objects.")
    encryption: Literal["none", "crypt4gh"] = Field(
        "none",
        description=(
            "crypt4gh: files are stored Crypt4GH-encrypted to the node's key (gateway.crypt4gh) and served "
            "re-encrypted to the researcher's public key (request header Crypt4GH-Public-Key)."
        ),
    )


class Crypt4GHSettings(SettingsModel):
    """The node's Crypt4GH private key. The passphrase is never a setting: an env variable name or a file."""

    key_file: str = Field(description="The node's Crypt4GH private key file (crypt4gh-keygen, c4gh-v1 format).")
    passphrase_env: str | None = Field(
        None, description="Name of the environment variable holding the key's passphrase (not the passphrase)."
    )
    passphrase_file: str | None = Field(
        None, description="Path of a secret file holding the key's passphrase (one trailing newline is dropped)."
    )
    allow_unencrypted_key: bool = Field(False, description="Accept a key file stored without a passphrase.")


class GatewaySettings(SettingsModel):
    """Everything the data gateway needs; the defaults serve nothing until datasets are set."""

    mode: Mode = Field("stream", description="stream: the gateway sends the bytes. offload: nginx does.")
    realm: str = Field("ga4gh-broker", description="The realm of the gateway's authentication challenges.")
    stores: dict[str, DataStoreSettings] = Field(default_factory=dict, description="Data stores by name.")
    datasets: dict[str, DatasetSettings] = Field(default_factory=dict, description="Datasets by id.")
    max_ranges: int = Field(16, gt=0, description="Most ranges in one Range header (more is refused with 416).")
    max_range_header_bytes: int = Field(1024, gt=0, description="Longest Range header accepted.")
    chunk_bytes: int = Field(262_144, gt=0, description="Size of the pieces bytes are streamed in.")
    expose_required_visas: bool = Field(
        True, description="403 bodies carry the policy's required-visas document (what would grant access)."
    )
    signed_url_lifetime_seconds: int = Field(
        120, gt=0, le=MAX_SIGNED_URL_LIFETIME, description="Lifetime of DRS signed URLs (at most 300)."
    )
    url_signing_key: SecretStr | None = Field(
        None, description="Key of DRS signed URLs; default: generated in <data_dir>/gateway/url-signing.key."
    )
    public_base_url: str | None = Field(
        None, description="Absolute URLs we hand out start with this; default: the issuer without '/'."
    )
    drs_max_passports: int = Field(10, gt=0, description="Most passports in one DRS POST body.")
    drs_service_id: str = Field("org.ga4gh-broker.drs", description="The DRS service-info id.")
    drs_organization_name: str = Field("ga4gh-broker", description="The DRS service-info organization name.")
    drs_organization_url: str = Field("https://example.org/", description="The DRS service-info organization URL.")
    decision_prefix: str = Field("/data/", description="The decision endpoint expects original URIs under this path.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Exact origins (genome viewers) allowed to read with credentials."
    )
    metrics: bool = Field(True, description="Serve /metrics.")
    metrics_token: SecretStr | None = Field(
        None, description="/metrics needs this bearer token when set; unset, it answers loopback peers only."
    )
    crypt4gh: Crypt4GHSettings | None = Field(
        None, description="The node's Crypt4GH key, needed when a dataset has encryption: crypt4gh."
    )
    checksum_cache_dir: str | None = Field(
        None, description="Where sha-256 checksums are cached; default <data_dir>/gateway/checksums."
    )
    audit_window_seconds: float = Field(
        60.0,
        gt=0,
        description="A holder's first decision per credential and object is logged durably before any byte; "
        "repeats within this many seconds are counted and logged as summaries.",
    )
    audit_flush_seconds: float = Field(
        0.5, gt=0, le=1.0, description="Counted repeats and transfers reach the audit log within this many seconds."
    )
    decision_cache_entries: int = Field(
        10_000, ge=0, description="Allowed decisions remembered per process (0: none); any revocation clears them."
    )
    decision_cache_seconds: float = Field(
        30.0, gt=0, description="The longest an allowed decision is reused (never past its credential's expiry)."
    )


def check_gateway(s: GatewaySettings) -> None:
    """Cross-field rules; raises :class:`~broker.settings_model.SettingsProblem` naming the key."""
    if s.url_signing_key is not None and len(s.url_signing_key.get_secret_value()) < 32:
        raise SettingsProblem("gateway.url_signing_key", "expected at least 32 characters of secret")
    if not _FIELD_VALUE.fullmatch(s.realm) or '"' in s.realm or "\\" in s.realm:
        raise SettingsProblem("gateway.realm", "expected printable ASCII without quotes or backslashes")
    if not (s.decision_prefix.startswith("/") and s.decision_prefix.endswith("/")):
        raise SettingsProblem("gateway.decision_prefix", "expected a path starting and ending with '/'")
    if s.public_base_url is not None and not s.public_base_url.startswith(("https://", "http://")):
        raise SettingsProblem("gateway.public_base_url", "expected an http(s) URL")
    for i, origin in enumerate(s.cors_origins):
        if origin == "*" or not origin.startswith(("https://", "http://")) or origin.endswith("/"):
            raise SettingsProblem(
                f"gateway.cors_origins[{i}]",
                "expected an exact origin like https://viewer.example (no wildcard, no path)",
            )
    for name, store in s.stores.items():
        _check_store(name, store)
    for name, ds in s.datasets.items():
        key = f"gateway.datasets.{name}"
        if not DATASET_ID.fullmatch(name):
            raise SettingsProblem(key, "dataset ids are 1-128 characters of A-Z a-z 0-9 . _ ~ -")
        if ds.store not in s.stores:
            raise SettingsProblem(f"{key}.store", f"no store named {ds.store!r} in gateway.stores")
        if ds.prefix:
            try:
                validate_object_path(ds.prefix)
            except PathError as exc:
                raise SettingsProblem(f"{key}.prefix", exc.message) from None
        if ds.encryption == "crypt4gh":
            if s.crypt4gh is None:
                raise SettingsProblem(
                    f"{key}.encryption", "crypt4gh needs gateway.crypt4gh.key_file (the node's Crypt4GH private key)"
                )
            if s.stores[ds.store].kind != "directory":
                raise SettingsProblem(f"{key}.encryption", "crypt4gh datasets are served from directory stores only")
        mode = ds.mode or s.mode
        if mode == "offload" and not s.stores[ds.store].offload_location:
            raise SettingsProblem(
                f"{key}.mode",
                f"offload needs gateway.stores.{ds.store}.offload_location (an internal nginx location)",
            )
    _check_disjoint_prefixes(s.datasets)
    if s.crypt4gh is not None and s.crypt4gh.passphrase_env is not None and s.crypt4gh.passphrase_file is not None:
        raise SettingsProblem("gateway.crypt4gh", "give passphrase_env or passphrase_file, not both")


def _check_disjoint_prefixes(datasets: Mapping[str, DatasetSettings]) -> None:
    """No two datasets of one store may reach the same object (issue 6).

    A dataset's objects are ``<store>/<prefix>/<object path>``; if one prefix equals, contains
    or lies inside another on the same store (an empty prefix is the whole store), a request
    for ``/data/OUTER/INNER/secret.bam`` serves INNER's object under OUTER's policy. Prefixes
    are compared as validated path segments, never as strings: ``a/b`` lies inside ``a``,
    ``ab`` does not. Runs after every prefix passed :func:`validate_object_path`.
    """
    seen: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for name, ds in datasets.items():
        segments = validate_object_path(ds.prefix) if ds.prefix else ()
        for other, other_segments in seen.get(ds.store, []):
            common = min(len(segments), len(other_segments))
            if segments[:common] != other_segments[:common]:
                continue
            if len(segments) == len(other_segments):
                how = "the same folder as"
            elif len(segments) > len(other_segments):
                how = "a folder inside that of"
            else:
                how = "a folder that contains that of"
            raise SettingsProblem(
                f"gateway.datasets.{name}.prefix",
                f"dataset {name!r} (prefix {ds.prefix!r}) uses {how} dataset {other!r} (prefix "
                f"{datasets[other].prefix!r}) on store {ds.store!r}: one file would be served under two "
                "policies; give each dataset its own, separate prefix",
            )
        seen.setdefault(ds.store, []).append((name, segments))


def _check_store(name: str, store: DataStoreSettings) -> None:
    key = f"gateway.stores.{name}"
    if not DATASET_ID.fullmatch(name):
        raise SettingsProblem(key, "store names are 1-128 characters of A-Z a-z 0-9 . _ ~ -")
    if store.kind == "directory":
        if not store.path:
            raise SettingsProblem(f"{key}.path", "a directory store needs a path")
        if store.base_url or store.headers:
            raise SettingsProblem(key, "base_url and headers belong to http stores")
    else:
        if not store.base_url or not store.base_url.startswith(("http://", "https://")):
            raise SettingsProblem(f"{key}.base_url", "an http store needs an http(s) base_url")
        if any(c in store.base_url for c in "?#") or not _FIELD_VALUE.fullmatch(store.base_url):
            raise SettingsProblem(f"{key}.base_url", "expected a URL without query, fragment or spaces")
        for header, value in store.header_values().items():
            if not _TOKEN.fullmatch(header) or header.lower() in _RESERVED_UPSTREAM_HEADERS:
                raise SettingsProblem(f"{key}.headers.{header}", "not a header the gateway may inject")
            if not isinstance(value, str) or not _FIELD_VALUE.fullmatch(value):
                raise SettingsProblem(f"{key}.headers.{header}", "expected printable ASCII (no CR, LF, NUL)")
    if store.connect_timeout_seconds <= 0 or store.read_timeout_seconds <= 0:
        raise SettingsProblem(key, "timeouts must be greater than 0")
    loc = store.offload_location
    if loc is not None and not (
        loc.startswith("/")
        and loc.endswith("/")
        and _FIELD_VALUE.fullmatch(loc)
        and " " not in loc
        and "?" not in loc
        and "%" not in loc
    ):
        raise SettingsProblem(f"{key}.offload_location", "expected an absolute path ending with '/'")
