"""The root settings: every area's section, one YAML file and ``BROKER_*`` overrides.

Each area declares its own section (``broker/<area>/settings.py``); :class:`Settings`
composes them. Loading (:func:`load_settings`) is the only validation there is: the
command line's ``config check`` and ``serve`` call it alike, so a file ``config check``
accepts is a file the broker starts with. It runs, in order:

1. the YAML file (``-c FILE`` or ``BROKER_CONFIG``), a mapping at the top;
2. the environment: ``BROKER_`` plus the dotted path with ``__`` between levels, e.g.
   ``BROKER_STORE__BACKEND=redis`` or ``BROKER_SERVER__WORKERS=4``. A value is read as a
   YAML scalar (so ``4`` is an integer and ``true`` a boolean), except where the setting is
   text, where it is taken as written;
3. the types of every section (strict: a string is not a number, unknown keys are refused);
4. the rules a type cannot say, each area's ``check_*`` function with the key path of its
   section, and the trust configuration and the policy files, which are loaded once to prove
   they can be.

A mistake is one :class:`SettingsError` naming the file (or the environment variable), the
key and what was expected; the command line prints it as one line and exits with status 2.

:func:`reference_markdown` renders the reference of every setting from the schema
(``docs/settings.md``, kept current by a test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from broker.core.limits import LimitSettings
from broker.core.policy.errors import PolicyLoadError
from broker.core.policy.settings import PolicySettings, check_policy
from broker.dac.settings import DacSettings, check_dac_settings
from broker.errors import StartupError
from broker.gateway.settings import GatewaySettings, check_gateway
from broker.keys.settings import KeySettings, check_keys
from broker.login.settings import LoginSettings, check_login
from broker.oidc.settings import OidcSettings, check_oidc
from broker.settings_model import SettingsModel, SettingsProblem
from broker.store.settings import StoreSettings, check_store
from broker.trust.config import TrustConfig
from broker.trust.settings import TrustSettings
from broker.visas.settings import VisaSourceSettings, check_visa_sources
from broker.web.proxies import parse_networks
from broker.web.site import SiteSettings

ENV_PREFIX = "BROKER_"
ENV_CONFIG_FILE = "BROKER_CONFIG"
DEFAULTS = "<defaults>"


class SettingsError(StartupError):
    """A settings mistake: where (``source``, ``key``) and what was expected (``detail``)."""

    code = "settings_error"

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key
        self.detail = message


class ServerSettings(SettingsModel):
    """How ``ga4gh-broker serve`` listens and how long it waits (granian in production: broker/serve)."""

    bind: str = Field("127.0.0.1:8080", description="HOST:PORT to listen on.")
    workers: int = Field(2, gt=0, description="Worker processes.")
    threads: int = Field(
        32,
        gt=0,
        description="Threads per worker running requests. Waiting connections cost none; a download being "
        "streamed holds one until it ends (see stream_threads).",
    )
    stream_threads: int | None = Field(
        None,
        gt=0,
        description="Most long responses (downloads) one worker streams at once; more get 503 with Retry-After, "
        "so threads - stream_threads threads always remain for tokens, decisions and pages. Below threads; "
        "default: half of threads.",
    )
    timeout_seconds: int = Field(
        60, gt=0, description="A worker asked to stop (restart, shutdown) is killed after this many seconds."
    )
    max_header_bytes: int = Field(
        32_768, gt=0, description="Longest request head beyond the request line (a passport in Authorization)."
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=60,
        description="A client must send its whole request head within this time of opening the connection or "
        "of its previous request, else it is disconnected (slowloris, idle keep-alive).",
    )
    max_connections: int = Field(
        1024,
        gt=0,
        description="Open connections one worker handles at once; more wait in the listen backlog. Each costs "
        "a little memory, no thread.",
    )
    store_deadline_seconds: float = Field(
        2.0,
        gt=0,
        description="One deadline for all the store calls of one request: past it they fail with 503 at once.",
    )
    store_breaker_seconds: float = Field(
        5.0,
        gt=0,
        description="After the store failed to answer, store calls fail at once for this long, then one probe "
        "call is let through to see whether it is back.",
    )
    readyz_timeout_seconds: float = Field(
        1.0, gt=0, description="Longest /readyz (and a process's first JWKS) waits for its checks before answering."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDRs of the reverse proxies in front of the broker (e.g. [127.0.0.1] for a "
        "same-host nginx). Only a request whose peer is one of them has its X-Forwarded-For read, from the right, "
        "up to the first address that is not a trusted proxy: that is the client address rate limits count. "
        "Empty: the peer is the client. Forwarded requests never reach loopback-only endpoints (/metrics).",
    )

    @property
    def stream_limit(self) -> int:
        """``stream_threads``, or half of ``threads`` (at least 1) when it is not set."""
        return self.stream_threads if self.stream_threads is not None else max(1, self.threads // 2)

    @model_validator(mode="after")
    def _proxies_parse(self) -> ServerSettings:
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise SettingsProblem("server.trusted_proxies", str(exc)) from None
        return self

    @model_validator(mode="after")
    def _streams_leave_threads(self) -> ServerSettings:
        if self.stream_threads is not None and self.stream_threads >= self.threads:
            raise SettingsProblem(
                "server.stream_threads",
                f"must be below server.threads ({self.threads}), so requests other than downloads always have a "
                f"thread; got {self.stream_threads}",
            )
        return self


def default_data_dir(environ: Mapping[str, str] | None = None) -> str:
    """The absolute folder state lives in when no setting names one (see ``Settings.data_dir``)."""
    env = os.environ if environ is None else environ
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return state
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return str(Path(base) / "ga4gh-broker")


class Settings(BaseSettings):
    """Every setting of the broker; the defaults run a single-machine broker."""

    model_config = SettingsConfigDict(frozen=True, strict=True, extra="forbid", validate_default=False)

    issuer: str = Field("http://127.0.0.1:8080/", description="Our iss: the URL clients and verifiers know us by.")
    data_dir: str = Field(
        default_factory=lambda: default_data_dir(os.environ),
        description="The SQLite file, key files and gateway caches live here. A relative path in a settings "
        "file is relative to that file's folder. Unset: systemd's $STATE_DIRECTORY for a service, else "
        "$XDG_DATA_HOME/ga4gh-broker (~/.local/share/ga4gh-broker), so every command finds the same store "
        "from any working folder.",
        json_schema_extra={"shown_default": "per user (see what)"},
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Least level logged.")
    server: ServerSettings = Field(default_factory=ServerSettings, description="The HTTP server.")
    store: StoreSettings = Field(default_factory=StoreSettings, description="Where state lives.")
    keys: KeySettings = Field(default_factory=KeySettings, description="Our signing key ring.")
    limits: LimitSettings = Field(default_factory=LimitSettings, description="Hostile-input bounds.")
    trust: TrustSettings = Field(default_factory=TrustSettings, description="Who we believe.")
    policy: PolicySettings = Field(default_factory=PolicySettings, description="Dataset access rules.")
    oidc: OidcSettings = Field(default_factory=OidcSettings, description="The OpenID Provider.")
    login: LoginSettings = Field(default_factory=LoginSettings, description="How researchers log in.")
    dac: DacSettings = Field(default_factory=DacSettings, description="Data access committees.")
    visa_sources: list[VisaSourceSettings] = Field(
        default_factory=list, description="Remote visa issuers we fetch a user's visas from."
    )
    gateway: GatewaySettings = Field(default_factory=GatewaySettings, description="The data gateway.")
    site: SiteSettings = Field(default_factory=SiteSettings, description="The node's name and page footer links.")
    # Not a setting: which file these came from.
    source: str = Field(DEFAULTS, exclude=True, description="(internal) the file these settings came from.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the caller hands in: :func:`load_settings` reads the file and the environment
        itself, so that each value's origin is known and named in error messages."""
        return (init_settings,)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Settings:
        check_settings(self)
        return self

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def sqlite_path(self) -> Path:
        return Path(self.store.path) if self.store.path else self.data_path / "broker.db"

    @property
    def keys_path(self) -> Path:
        return Path(self.keys.directory) if self.keys.directory else self.data_path / "keys"


#: The settings that name a file or folder, as key paths (``*``: every item of a list or mapping).
#: A relative value of these read from a settings file is taken relative to that file's folder.
PATH_SETTINGS: tuple[tuple[str, ...], ...] = (
    ("data_dir",),
    ("store", "path"),
    ("keys", "directory"),
    ("policy", "directory"),
    ("trust", "visa_issuers", "*", "jwks_file"),
    ("trust", "brokers", "*", "jwks_file"),
    ("gateway", "checksum_cache_dir"),
    ("gateway", "stores", "*", "path"),
)


def _anchor_paths(node: Any, key_path: tuple[str, ...], folder: Path) -> None:
    """Make the relative path at ``key_path`` inside ``node`` (parsed YAML) relative to ``folder``.

    Anything that is not the expected shape is left alone for validation to name.
    """
    head, rest = key_path[0], key_path[1:]
    if head == "*":
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            _anchor_paths(child, rest, folder)
        return
    if not isinstance(node, dict) or head not in node:
        return
    if rest:
        _anchor_paths(node[head], rest, folder)
        return
    value = node[head]
    if isinstance(value, str) and value and not Path(value).is_absolute():
        node[head] = str(folder / value)


def check_settings(s: Settings) -> None:
    """Every rule a type cannot say, section by section (:class:`SettingsProblem` at the first)."""
    if not s.issuer.startswith(("https://", "http://")):
        raise SettingsProblem("issuer", f"expected an http(s) URL, got {s.issuer!r}")
    check_store(s.store)
    check_keys(s.keys)
    TrustConfig.from_settings(s.trust, s.issuer)
    check_oidc(s.oidc, s.keys.max_token_lifetime_seconds)
    check_login(s.login)
    check_dac_settings(s.dac, s.issuer)
    check_visa_sources(s.visa_sources, s.trust.fetch.allow_http_loopback)
    check_gateway(s.gateway)
    check_policy(s.policy)


# --------------------------------------------------------------------------- loading


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file (if any), apply ``BROKER_*`` overrides, validate everything, return Settings.

    ``path`` None means: the file named by ``BROKER_CONFIG`` if set, else the embedded defaults.
    Raises :class:`SettingsError` on any mistake.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_CONFIG_FILE):
        path = env[ENV_CONFIG_FILE]
    raw: dict[str, Any] = {}
    source = DEFAULTS
    if path is not None:
        source = str(path)
        raw = _read_yaml(Path(path))
        folder = Path(path).resolve().parent
        for key_path in PATH_SETTINGS:
            _anchor_paths(raw, key_path, folder)
    origins: dict[str, str] = {}
    for key, value in sorted(env.items()):
        if not key.startswith(ENV_PREFIX) or key == ENV_CONFIG_FILE:
            continue
        dotted = key[len(ENV_PREFIX) :].lower().split("__")
        _apply_override(raw, dotted, value, key)
        origins[".".join(dotted)] = f"environment {key}"
    raw.setdefault("data_dir", default_data_dir(env))
    return build_settings(raw, source, origins)


_NO_KEY = object()


def build_settings(
    raw: Mapping[str, Any], source: str = DEFAULTS, origins: Mapping[str, str] | None = None
) -> Settings:
    """Settings from plain data (the parsed YAML plus overrides); :class:`SettingsError` on any mistake.

    ``origins`` maps a dotted key to where its value came from when that is not ``source``.
    """
    if not isinstance(raw, Mapping):
        raise SettingsError(source, "", f"expected a mapping of settings at the top, got {_kind(raw)}")
    odd = next((key for key in raw if not isinstance(key, str)), _NO_KEY)
    if odd is not _NO_KEY:
        raise SettingsError(source, "", f"expected setting names at the top, got the key {odd!r}")
    origins = origins or {}
    try:
        return Settings(**{**raw, "source": source})
    except ValidationError as exc:
        error = exc.errors()[0]
        key = _key_of(error["loc"])
        raise SettingsError(_origin(key, source, origins), key, _message(error, key)) from None
    except SettingsProblem as exc:
        raise SettingsError(_origin(exc.key, source, origins), exc.key, exc.detail) from None
    except PolicyLoadError as exc:
        raise SettingsError(source, "policy.directory", str(exc)) from None


def _origin(key: str, source: str, origins: Mapping[str, str]) -> str:
    plain = key.replace("[", ".").replace("]", "")
    for dotted, origin in origins.items():
        if plain == dotted or plain.startswith(dotted + "."):
            return origin
    return source


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
    except RecursionError:
        raise SettingsError(source, "", "nested too deeply to be settings") from None
    except (ValueError, OverflowError):
        # PyYAML's constructors raise these for well-formed text they cannot turn into a value,
        # such as the date 2001-02-30. Their message may quote the value, which may be a secret.
        raise SettingsError(
            source, "", "a value YAML cannot turn into data (an impossible date?); put it in quotes to keep it as text"
        ) from None
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
    node[dotted[-1]] = value if _is_text(dotted) else _scalar(value)


def _scalar(value: str) -> Any:
    try:
        return yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        return value


def _is_text(dotted: list[str]) -> bool:
    """True when the setting at ``dotted`` is text (a string or a secret), so an override is taken as written."""
    model: Any = Settings
    annotation: Any = None
    for part in dotted:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        annotation = fields[part].annotation
        model = _model_in(annotation)
    return any(arg in (str, SecretStr) for arg in (annotation, *get_args(annotation)))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


# --------------------------------------------------------------------------- messages


def _key_of(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith("function-"):
            continue
        else:
            key += f".{part}" if key else str(part)
    return key


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


def _message(error: Mapping[str, Any], key: str) -> str:
    """One sentence in our words for a pydantic error."""
    kind = error["type"]
    got = _kind(error.get("input"))
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required setting is missing"
    if kind == "extra_forbidden":
        known = ", ".join(sorted(_known_fields(key)))
        return f"unknown setting (known here: {known})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "string_type":
        return f"expected a string, got {got}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping, got {got}"
    if kind == "list_type":
        return f"expected a list, got {got}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        return f"expected one of {expected}, got {got}"
    if kind == "greater_than":
        return f"expected a number greater than {ctx.get('gt')}, got {error.get('input')!r}"
    if kind == "greater_than_equal":
        return f"expected a number of at least {ctx.get('ge')}, got {error.get('input')!r}"
    if kind == "less_than_equal":
        return f"expected a number of at most {ctx.get('le')}, got {error.get('input')!r}"
    if kind == "string_too_short":
        return "expected a non-empty string"
    return str(error.get("msg", "invalid value"))


def _known_fields(key: str) -> list[str]:
    """The settings known at the level of ``key`` (for "unknown setting" messages)."""
    model: Any = Settings
    parts = [p for p in key.replace("]", "").replace("[", ".").split(".") if p and not p.isdigit()][:-1]
    for part in parts:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            break
        nested = _model_in(fields[part].annotation)
        if nested is None:
            origin = get_origin(fields[part].annotation)
            if origin is dict:
                nested = _model_in(get_args(fields[part].annotation)[1])
        if nested is None:
            break
        model = nested
    return [name for name, info in getattr(model, "model_fields", {}).items() if not info.exclude]


# --------------------------------------------------------------------------- printing


def redacted(settings: BaseModel) -> dict[str, Any]:
    """The effective settings as plain data, with every secret that is set replaced by ``***``."""
    out = _redact(settings)
    assert isinstance(out, dict)
    return out


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "***" if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        return {
            name: _redact(getattr(value, name)) for name, info in type(value).model_fields.items() if not info.exclude
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- reference


def reference_markdown() -> str:
    """The reference of every setting, generated from the schema (``docs/settings.md``)."""
    lines = [
        "# Settings reference",
        "",
        "Generated from the settings schema by `python -m broker.settings` (a test fails when this file is",
        "stale). Every key is optional. Set them in one YAML file (`ga4gh-broker -c broker.yaml ...` or",
        "`BROKER_CONFIG=broker.yaml`), or override one with `BROKER_` plus the dotted path in capitals with",
        "`__` between levels (`BROKER_STORE__BACKEND=redis`). Secrets print as `***` in `config check`.",
        "",
    ]
    for title, path, model in _sections():
        lines += [f"## `{title}`", "", (model.__doc__ or "").strip().splitlines()[0], ""]
        lines += ["| key | type | default | what |", "|---|---|---|---|"]
        for key, info in model.model_fields.items():
            if info.exclude:
                continue
            nested = _model_in(info.annotation)
            if nested is not None and get_origin(info.annotation) is None:
                continue  # its own section below
            what = _cell(info.description or "")
            lines.append(f"| `{path}{key}` | {_type_name(info.annotation)} | {_default(info)} | {what} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _sections() -> Iterator[tuple[str, str, type[BaseModel]]]:
    yield "top level", "", Settings

    def walk(model: type[BaseModel], path: str) -> Iterator[tuple[str, str, type[BaseModel]]]:
        for key, info in model.model_fields.items():
            if info.exclude:
                continue
            nested = _model_in(info.annotation)
            origin = get_origin(info.annotation)
            if origin is dict:
                nested = _model_in(get_args(info.annotation)[1])
                suffix = ".<name>"
            elif origin is list:
                suffix = "[]"
            else:
                suffix = ""
            if nested is None:
                continue
            here = f"{path}{key}{suffix}"
            yield here, here + ".", nested
            yield from walk(nested, here + ".")

    yield from walk(Settings, "")


def _type_name(annotation: Any) -> str:
    """A short, readable name of a setting's type: ``one of a, b``, ``list of X``, ``int or unset``."""
    args = get_args(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in rest) + " or unset"
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])}"
    if annotation is SecretStr:
        return "secret text"
    if annotation is str:
        return "text"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("shown_default"), str):
        return _cell(str(extra["shown_default"]))
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return _cell(", ".join(redacted(v).get("id", "…") for v in value))
    return _cell(f"`{value!r}`" if value is not None else "unset")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    print(reference_markdown(), end="")
