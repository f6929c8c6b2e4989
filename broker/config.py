"""Settings: one YAML file plus ``BROKER_*`` environment overrides, validated at start.

Every section is a frozen dataclass. The loader walks the dataclass fields, so a new
setting is declared in exactly one place (its dataclass) and is validated, documented in
``config check`` and overridable from the environment with no other code.

Environment overrides use ``BROKER_`` plus the dotted path with ``__`` between levels,
e.g. ``BROKER_STORE__BACKEND=redis`` or ``BROKER_ISSUER=https://broker.example/``. The
value is read as a YAML scalar, so ``BROKER_SERVER__WORKERS=4`` is an int.

A mistake is reported as one :class:`SettingsError` naming the file, the key, what was
expected and what was found; the command line turns it into one line and exit status 2.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from broker.dac.settings import DacSettings, VisaSourceSettings, check_dac_settings, check_visa_sources
from broker.errors import StartupError
from broker.gateway.settings import GatewaySettings, check_gateway

ENV_PREFIX = "BROKER_"
ENV_CONFIG_FILE = "BROKER_CONFIG"


class SettingsError(StartupError):
    """A settings mistake, with where it is and what was expected."""

    code = "settings_error"

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key
        self.detail = message


def secret(default: Any = None) -> Any:
    """A field whose value is never printed (``config check`` shows ``***``)."""
    return field(default=default, metadata={"secret": True}, repr=False)


@dataclass(frozen=True)
class ServerSettings:
    """How ``ga4gh-broker serve`` listens (gunicorn in production)."""

    bind: str = "127.0.0.1:8080"
    workers: int = 2
    threads: int = 4
    timeout_seconds: int = 60
    # One header line (a passport in Authorization): 32 KiB fits about 35 visas; gunicorn's own default is 8190.
    max_header_bytes: int = 32_768


@dataclass(frozen=True)
class StoreSettings:
    """Where state lives: SQLite (one file, the embedded default) or Redis (shared)."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    path: str | None = None  # SQLite file; default <data_dir>/broker.db
    url: str = secret("redis://127.0.0.1:6379/0")  # may embed a password
    namespace: str = "ga4gh-broker"
    timeout_seconds: float = 2.0


@dataclass(frozen=True)
class KeySettings:
    """Our signing key ring: algorithm, where private keys live, rotation schedule."""

    algorithm: Literal["ES256", "RS256"] = "ES256"
    storage: Literal["file", "store"] = "file"
    directory: str | None = None  # default <data_dir>/keys
    # 0 means rotate only by `ga4gh-broker keys rotate`.
    rotate_every_days: float = 90.0
    # A new key is published this long before it signs (the JWKS cache period we promise).
    publish_ahead_seconds: int = 3600
    # The longest lifetime of anything we sign: a retired key stays published this long.
    max_token_lifetime_seconds: int = 86400
    # Key-encryption passphrase for private keys kept in the store (storage: store).
    encryption_secret: str | None = secret(None)


@dataclass(frozen=True)
class LimitSettings:
    """Hostile-input bounds, on by default (THREAT-MODEL section 1, DESIGN rule 5)."""

    max_passport_bytes: int = 1_048_576
    max_visa_bytes: int = 16_384
    max_visas_per_passport: int = 200
    max_json_depth: int = 16
    max_url_claim_chars: int = 255
    clock_leeway_seconds: int = 60
    verified_cache_entries: int = 200_000


@dataclass(frozen=True)
class JwksFetchSettings:
    """The hardened JWKS fetcher (https only, no redirects, bounded)."""

    connect_timeout_seconds: float = 2.0
    read_timeout_seconds: float = 3.0
    max_bytes: int = 65_536
    max_keys: int = 32
    cache_ttl_seconds: int = 300
    stale_if_error_seconds: int = 3600
    unknown_kid_cooldown_seconds: int = 60
    # Plain http is allowed only for loopback addresses, and only when this is true.
    allow_http_loopback: bool = False


@dataclass(frozen=True)
class TrustedIssuerSettings:
    """A visa issuer we believe: exact ``jku`` allow-list and/or pinned keys."""

    iss: str
    jku: list[str] = field(default_factory=list)
    jwks: dict[str, Any] | None = None  # inline JWKS ({"keys": [...]})
    jwks_file: str | None = None
    visa_types: list[str] | None = None  # None: every standard type
    sources: list[str] | None = None  # None: any source


@dataclass(frozen=True)
class TrustedBrokerSettings:
    """A broker whose passports (and access tokens) we accept."""

    iss: str
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_file: str | None = None


@dataclass(frozen=True)
class TrustSettings:
    """The one trust configuration: who we believe, and how we fetch their keys."""

    visa_issuers: list[TrustedIssuerSettings] = field(default_factory=list)
    brokers: list[TrustedBrokerSettings] = field(default_factory=list)
    fetch: JwksFetchSettings = field(default_factory=JwksFetchSettings)


@dataclass(frozen=True)
class PolicySettings:
    """Where dataset access rules live and whether edits are picked up live."""

    directory: str = "policies"
    watch: bool = True


@dataclass(frozen=True)
class DeclaredClientSettings:
    """An OAuth client declared in the settings file (next to those added by ``clients add``).

    ``secret_hash`` is the scrypt hash ``clients add --print-hash`` prints, never the secret.
    """

    client_id: str
    redirect_uris: list[str] = field(default_factory=list)
    name: str = ""
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    scopes: list[str] = field(default_factory=lambda: ["openid"])
    auth_method: Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"] = "client_secret_basic"
    secret_hash: str | None = secret(None)
    jwks: dict[str, Any] | None = None
    post_logout_redirect_uris: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OidcSettings:
    """The OpenID Provider toward clients: token lifetimes (short by default) and declared clients."""

    access_token_lifetime_seconds: int = 900
    id_token_lifetime_seconds: int = 600
    refresh_token_lifetime_seconds: int = 14 * 86400  # absolute lifetime of a rotation family
    code_lifetime_seconds: int = 60
    passport_lifetime_seconds: int = 3600
    visa_lifetime_seconds: int = 3600  # visas we mint on demand (upstream claims, links)
    device_code_lifetime_seconds: int = 600
    device_poll_interval_seconds: int = 5
    # PKCE S256 is always required of public clients; true requires it of every client.
    require_pkce: bool = False
    clients: list[DeclaredClientSettings] = field(default_factory=list)


@dataclass(frozen=True)
class ConnectorSettings:
    """One way to log in: ``local`` (accounts in the store) or ``oidc`` (an upstream IdP)."""

    id: str
    kind: Literal["local", "oidc"]
    name: str = ""  # shown on the login page
    issuer: str | None = None  # oidc: the upstream issuer; discovery is <issuer>/.well-known/openid-configuration
    client_id: str | None = None
    client_secret: str | None = secret(None)
    scopes: list[str] = field(default_factory=lambda: ["openid", "profile", "email"])
    # oidc: read ga4gh_passport_v1 from the upstream's userinfo and relay trusted visas.
    relay_passport: bool = False
    # oidc: map eduPersonScopedAffiliation to AffiliationAndRole visas we mint (by: system).
    affiliation_source: str | None = None  # the visa `source`; default: the upstream issuer
    timeout_seconds: float = 5.0
    max_response_bytes: int = 262_144


@dataclass(frozen=True)
class LoginSettings:
    """Browser login: connectors on the login page and the server-side session."""

    connectors: list[ConnectorSettings] = field(
        default_factory=lambda: [ConnectorSettings(id="local", kind="local", name="Local account")]
    )
    session_lifetime_seconds: int = 8 * 3600
    interaction_lifetime_seconds: int = 600  # a pending authorization request waiting for login/consent


@dataclass(frozen=True)
class Settings:
    """Every setting of the broker; the defaults run a single-machine broker."""

    issuer: str = "http://127.0.0.1:8080/"
    data_dir: str = "./var"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    keys: KeySettings = field(default_factory=KeySettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    trust: TrustSettings = field(default_factory=TrustSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    oidc: OidcSettings = field(default_factory=OidcSettings)
    login: LoginSettings = field(default_factory=LoginSettings)
    dac: DacSettings = field(default_factory=DacSettings)
    visa_sources: list[VisaSourceSettings] = field(default_factory=list)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    # Not a setting: which file these came from ("<defaults>" when none).
    source: str = field(default="<defaults>", metadata={"internal": True})

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def sqlite_path(self) -> Path:
        return Path(self.store.path) if self.store.path else self.data_path / "broker.db"

    @property
    def keys_path(self) -> Path:
        return Path(self.keys.directory) if self.keys.directory else self.data_path / "keys"


# --------------------------------------------------------------------------- loading


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file (if any), apply ``BROKER_*`` overrides, validate, return Settings.

    ``path`` None means: the file named by ``BROKER_CONFIG`` if set, else embedded defaults.
    Raises :class:`SettingsError` on any mistake.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_CONFIG_FILE):
        path = env[ENV_CONFIG_FILE]
    raw: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        raw = _read_yaml(Path(path))
    for key, value in sorted(env.items()):
        if not key.startswith(ENV_PREFIX) or key == ENV_CONFIG_FILE:
            continue
        dotted = key[len(ENV_PREFIX) :].lower().split("__")
        _apply_override(raw, dotted, value, key)
    settings = _build(Settings, {**raw, "source": source}, source, "")
    _check(settings)
    return settings


def _read_yaml(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(source, "", f"cannot read: {exc.__class__.__name__}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SettingsError(source, "", f"{where}{problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(source, "", f"expected a mapping of settings at the top, got {_kind(data)}")
    return data


def _apply_override(raw: dict[str, Any], dotted: list[str], value: str, env_key: str) -> None:
    node = raw
    for part in dotted[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SettingsError(f"environment {env_key}", ".".join(dotted), "cannot override inside a non-mapping")
        node = child
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    node[dotted[-1]] = parsed


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    if isinstance(value, dict | list):
        return names[type(value)]
    return f"{names.get(type(value), type(value).__name__)} {value!r}"


def _build(cls: type, data: Any, source: str, path: str) -> Any:
    if not isinstance(data, dict):
        raise SettingsError(source, path or "<top>", f"expected a mapping, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        known = ", ".join(sorted(n for n, f in fields.items() if not f.metadata.get("internal")))
        key = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise SettingsError(source, key, f"unknown setting (known here: {known})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], source, key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SettingsError(source, key, "required setting is missing")
    return cls(**kwargs)


def _convert(value: Any, tp: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], source, key)
    if origin is Literal:
        if value in args and type(value) is type(args[0]):
            return value
        allowed = ", ".join(repr(a) for a in args)
        raise SettingsError(source, key, f"expected one of {allowed}, got {_kind(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise SettingsError(source, key, f"expected a list, got {_kind(value)}")
        return [_convert(v, args[0], source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(source, key, f"expected a mapping, got {_kind(value)}")
        return {str(k): _convert(v, args[1], source, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(source, key, f"expected true or false, got {_kind(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(source, key, f"expected an integer, got {_kind(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise SettingsError(source, key, f"expected a number, got {_kind(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise SettingsError(source, key, f"expected a string, got {_kind(value)}")
    raise SettingsError(source, key, f"unsupported setting type {tp!r}")  # a bug in a dataclass, not in the file


def _check(s: Settings) -> None:
    """Cross-field rules a type cannot say."""
    src = s.source
    if not s.issuer.startswith(("https://", "http://")):
        raise SettingsError(src, "issuer", f"expected an http(s) URL, got {s.issuer!r}")
    positive = {
        "server.workers": s.server.workers,
        "server.threads": s.server.threads,
        "server.max_header_bytes": s.server.max_header_bytes,
        "store.timeout_seconds": s.store.timeout_seconds,
        "keys.publish_ahead_seconds": s.keys.publish_ahead_seconds,
        "keys.max_token_lifetime_seconds": s.keys.max_token_lifetime_seconds,
        "limits.max_passport_bytes": s.limits.max_passport_bytes,
        "limits.max_visa_bytes": s.limits.max_visa_bytes,
        "limits.max_visas_per_passport": s.limits.max_visas_per_passport,
        "limits.max_json_depth": s.limits.max_json_depth,
        "limits.verified_cache_entries": s.limits.verified_cache_entries,
    }
    for key, value in positive.items():
        if value <= 0:
            raise SettingsError(src, key, f"expected a number greater than 0, got {value!r}")
    if s.keys.rotate_every_days < 0:
        raise SettingsError(src, "keys.rotate_every_days", "expected 0 (manual only) or a positive number of days")
    if 0 < s.keys.rotate_every_days * 86400 <= s.keys.publish_ahead_seconds:
        raise SettingsError(
            src,
            "keys.rotate_every_days",
            "must be longer than keys.publish_ahead_seconds, or each key would be replaced on arrival",
        )
    if s.limits.clock_leeway_seconds < 0 or s.limits.clock_leeway_seconds > 300:
        raise SettingsError(src, "limits.clock_leeway_seconds", "expected 0 to 300 seconds")
    if s.store.backend == "redis" and not s.store.url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(src, "store.url", "expected a redis://, rediss:// or unix:// URL")
    if s.keys.storage == "store" and not s.keys.encryption_secret:
        raise SettingsError(
            src, "keys.encryption_secret", "required when keys.storage is 'store' (keys are kept encrypted)"
        )
    for i, ti in enumerate(s.trust.visa_issuers):
        if not ti.jku and ti.jwks is None and ti.jwks_file is None:
            raise SettingsError(src, f"trust.visa_issuers[{i}]", "expected at least one of jku, jwks, jwks_file")
    _check_oidc(s)
    _check_login(s)
    check_dac_settings(s.dac, src, s.issuer)
    check_visa_sources(s.visa_sources, src, s.trust.fetch.allow_http_loopback)
    check_gateway(s.gateway, src)


def _check_oidc(s: Settings) -> None:
    """Lifetimes are positive and short enough to sign with the key ring; declared clients are sane."""
    src = s.source
    o = s.oidc
    lifetimes = {
        "oidc.access_token_lifetime_seconds": o.access_token_lifetime_seconds,
        "oidc.id_token_lifetime_seconds": o.id_token_lifetime_seconds,
        "oidc.refresh_token_lifetime_seconds": o.refresh_token_lifetime_seconds,
        "oidc.code_lifetime_seconds": o.code_lifetime_seconds,
        "oidc.passport_lifetime_seconds": o.passport_lifetime_seconds,
        "oidc.visa_lifetime_seconds": o.visa_lifetime_seconds,
        "oidc.device_code_lifetime_seconds": o.device_code_lifetime_seconds,
        "oidc.device_poll_interval_seconds": o.device_poll_interval_seconds,
    }
    for key, value in lifetimes.items():
        if value <= 0:
            raise SettingsError(src, key, f"expected a number greater than 0, got {value!r}")
    for key in (
        "oidc.access_token_lifetime_seconds",
        "oidc.id_token_lifetime_seconds",
        "oidc.passport_lifetime_seconds",
        "oidc.visa_lifetime_seconds",
    ):
        if lifetimes[key] > s.keys.max_token_lifetime_seconds:
            raise SettingsError(src, key, "must not exceed keys.max_token_lifetime_seconds")
    if o.code_lifetime_seconds > 600:
        raise SettingsError(src, "oidc.code_lifetime_seconds", "expected at most 600 seconds (RFC 6749 4.1.2)")
    seen: set[str] = set()
    for i, c in enumerate(o.clients):
        key = f"oidc.clients[{i}]"
        if not c.client_id or c.client_id in seen:
            raise SettingsError(src, f"{key}.client_id", "expected a non-empty client_id, unique among clients")
        seen.add(c.client_id)
        if c.auth_method in ("client_secret_basic", "client_secret_post") and not c.secret_hash:
            raise SettingsError(src, f"{key}.secret_hash", f"required for auth_method {c.auth_method}")
        if c.auth_method == "private_key_jwt" and not c.jwks:
            raise SettingsError(src, f"{key}.jwks", "required for auth_method private_key_jwt")
        for j, uri in enumerate(c.redirect_uris + c.post_logout_redirect_uris):
            if not uri.startswith(("https://", "http://")) or "#" in uri:
                raise SettingsError(src, f"{key}.redirect_uris[{j}]", "expected an absolute http(s) URL, no fragment")


def _check_login(s: Settings) -> None:
    """Connector ids are unique; an oidc connector names its upstream and its client there."""
    src = s.source
    if s.login.session_lifetime_seconds <= 0 or s.login.interaction_lifetime_seconds <= 0:
        raise SettingsError(src, "login", "session and interaction lifetimes must be greater than 0")
    seen: set[str] = set()
    for i, c in enumerate(s.login.connectors):
        key = f"login.connectors[{i}]"
        if not c.id or c.id in seen or not c.id.replace("-", "").replace("_", "").isalnum():
            raise SettingsError(src, f"{key}.id", "expected a unique id of letters, digits, - and _")
        seen.add(c.id)
        if c.kind == "oidc":
            if not c.issuer or not c.issuer.startswith(("https://", "http://")):
                raise SettingsError(src, f"{key}.issuer", "required for kind oidc: the upstream issuer URL")
            if not c.client_id:
                raise SettingsError(src, f"{key}.client_id", "required for kind oidc")


# --------------------------------------------------------------------------- printing


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with every secret replaced by ``***``."""
    return _redact(settings)


def _redact(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            if f.metadata.get("internal"):
                continue
            value = getattr(obj, f.name)
            out[f.name] = "***" if f.metadata.get("secret") and value else _redact(value)
        return out
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _redact(v) for k, v in obj.items()}
    return obj
