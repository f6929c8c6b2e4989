"""Settings of data access committees (``dac:``) and remote visa sources (``visa_sources:``).

Both are plain frozen dataclasses read by the generic loader of :mod:`broker.config`
(``_build``), so they are validated, redacted and overridable like every other section.
Until ``Settings`` carries them as fields, :func:`parse_dac_settings` and
:func:`parse_visa_sources` build them from raw YAML data, and :func:`dac_settings` /
:func:`visa_sources` read them from a ``Settings`` (the embedded defaults when absent).

What a type cannot say is checked by :func:`check_dac_settings` and
:func:`check_visa_sources`, which raise :class:`broker.config.SettingsError` naming the key:

- a DAC ``source`` is an absolute https URL of at most 255 characters (Passport 1.2, URL
  claims; THREAT-MODEL UI-12), unique among DACs; ids are unique and plain;
- a dataset is governed by at most one DAC (an exact id listed twice, or an id listed by one
  DAC and matched by another's pattern, is refused: one authority per dataset, GA-12);
- a member is listed once per DAC; roles are ``member`` or ``chair``;
- the dataset URL template holds ``{dataset}`` exactly once and yields an https URL;
- a remote source's URL template is https (http only to loopback when
  ``trust.fetch.allow_http_loopback``), holds ``{user}`` exactly once in its path, and its
  timeout, TTL and size bounds are positive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from broker.core.conditions import compile_pattern

if TYPE_CHECKING:
    from broker.config import Settings

MAX_URL_CLAIM_CHARS = 255
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DATASET_PLACEHOLDER = "{dataset}"
USER_PLACEHOLDER = "{user}"


@dataclass(frozen=True)
class DacMemberSettings:
    """A broker identity on a DAC: ``member`` grants and revokes, ``chair`` also manages members."""

    identity: str
    role: Literal["member", "chair"] = "member"


@dataclass(frozen=True)
class DacEntrySettings:
    """One data access committee: who it is, what it governs, who sits on it."""

    id: str
    source: str  # the `source` claim of every visa it issues (its persistent URL)
    name: str = ""
    datasets: list[str] = field(default_factory=list)  # exact dataset ids
    dataset_patterns: list[str] = field(default_factory=list)  # Passport globs (`?`, `*`)
    dataset_url_template: str | None = None  # overrides dac.dataset_url_template
    members: list[DacMemberSettings] = field(default_factory=list)


@dataclass(frozen=True)
class DacSettings:
    """Every DAC, the site admins, and the bounds on what DACs grant."""

    committees: list[DacEntrySettings] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)  # broker identity ids with the site admin role
    # The visa `value` of a grant: this template with the dataset id percent-encoded.
    # Default (None): <issuer>/datasets/{dataset}.
    dataset_url_template: str | None = None
    # Lifetime of the ControlledAccessGrants visas we mint (exp = min(grant end, now + this)).
    visa_lifetime_seconds: int = 3600
    # The longest grant a DAC may give (GA-13: a client cannot ask for 100 years).
    max_grant_days: float = 5 * 365.0
    # `source` of registered-access visas decided by the site (self acceptance, site admin);
    # default (None): our issuer without its trailing slash.
    registered_access_source: str | None = None
    # How long a registered-access record lasts (acceptance of terms, researcher status).
    registered_access_days: float = 365.0


@dataclass(frozen=True)
class VisaSourceSettings:
    """A remote visa issuer we fetch a user's visas from (REMS / ELIXIR permissions API shape)."""

    name: str
    url: str  # e.g. https://rems.example/api/permissions/{user}
    # Which of the user's identifiers goes into {user}: our identity id, the `sub` of their
    # linked upstream identity at `upstream_issuer`, or their e-mail address.
    send: Literal["identity", "upstream_sub", "email"] = "identity"
    upstream_issuer: str | None = None  # required when send is upstream_sub
    # The whole header value, e.g. "Bearer <token>"; a secret (``config check`` shows ***).
    auth_header: str | None = field(default=None, metadata={"secret": True}, repr=False)
    auth_header_name: str = "Authorization"
    timeout_seconds: float = 3.0  # the most one fetch may cost, connect to last byte
    cache_ttl_seconds: int = 300  # a fetched answer is reused this long per (source, user)
    max_response_bytes: int = 1_048_576


def parse_dac_settings(data: Any, source: str = "<dac>", key: str = "dac") -> DacSettings:
    """``DacSettings`` from raw YAML data, validated (:class:`SettingsError` on any mistake)."""
    from broker.config import _build

    built = _build(DacSettings, data if data is not None else {}, source, key)
    assert isinstance(built, DacSettings)
    return built


def parse_visa_sources(
    data: Any, source: str = "<visa_sources>", key: str = "visa_sources"
) -> list[VisaSourceSettings]:
    """The list of ``VisaSourceSettings`` from raw YAML data (:class:`SettingsError` on any mistake)."""
    from broker.config import SettingsError, _build

    if data is None:
        return []
    if not isinstance(data, list):
        raise SettingsError(source, key, f"expected a list of visa sources, got {type(data).__name__}")
    return [_build(VisaSourceSettings, item, source, f"{key}[{i}]") for i, item in enumerate(data)]


def dac_settings(settings: Settings) -> DacSettings:
    """The DAC settings of ``settings`` (``Settings.dac`` once the lead adds it; defaults before)."""
    value = getattr(settings, "dac", None)
    return value if isinstance(value, DacSettings) else DacSettings()


def visa_sources(settings: Settings) -> list[VisaSourceSettings]:
    """The remote visa sources of ``settings`` (``Settings.visa_sources``; none before it exists)."""
    value = getattr(settings, "visa_sources", None)
    return list(value) if isinstance(value, list) else []


# --------------------------------------------------------------------------- derived values


def default_dataset_url_template(issuer: str) -> str:
    return issuer.rstrip("/") + "/datasets/" + DATASET_PLACEHOLDER


def registered_access_source(dac: DacSettings, issuer: str) -> str:
    return dac.registered_access_source or issuer.rstrip("/")


def _is_https_url(url: str) -> bool:
    return bool(re.fullmatch(r"https://[A-Za-z0-9.\-\[\]:]+(/[^\s\x00-\x1f\x7f]*)?", url))


# --------------------------------------------------------------------------- cross-field checks


def check_dac_settings(dac: DacSettings, source: str, issuer: str, key: str = "dac") -> None:
    """Every rule of the module docstring for ``dac:``; :class:`SettingsError` at the first broken one."""
    from broker.config import SettingsError

    if dac.visa_lifetime_seconds <= 0:
        raise SettingsError(source, f"{key}.visa_lifetime_seconds", "expected a number greater than 0")
    if dac.max_grant_days <= 0:
        raise SettingsError(source, f"{key}.max_grant_days", "expected a number greater than 0")
    if dac.registered_access_days <= 0:
        raise SettingsError(source, f"{key}.registered_access_days", "expected a number greater than 0")
    if dac.registered_access_source is not None:
        _check_url_claim(dac.registered_access_source, source, f"{key}.registered_access_source")
    template = dac.dataset_url_template or default_dataset_url_template(issuer)
    if dac.dataset_url_template is not None:
        _check_template(template, source, f"{key}.dataset_url_template")
    for i, admin in enumerate(dac.admins):
        if not isinstance(admin, str) or not admin:
            raise SettingsError(source, f"{key}.admins[{i}]", "expected a non-empty identity id")
    ids: set[str] = set()
    sources: set[str] = set()
    exact_owner: dict[str, str] = {}
    for i, entry in enumerate(dac.committees):
        where = f"{key}.committees[{i}]"
        if not ID_PATTERN.fullmatch(entry.id):
            raise SettingsError(source, f"{where}.id", "expected 1-64 letters, digits, '.', '_' or '-'")
        if entry.id in ids:
            raise SettingsError(source, f"{where}.id", f"DAC id {entry.id!r} is used twice")
        ids.add(entry.id)
        _check_url_claim(entry.source, source, f"{where}.source")
        if entry.source in sources:
            raise SettingsError(source, f"{where}.source", "two DACs cannot share one source URL")
        sources.add(entry.source)
        if entry.dataset_url_template is not None:
            _check_template(entry.dataset_url_template, source, f"{where}.dataset_url_template")
        for j, dataset in enumerate(entry.datasets):
            _check_dataset_id(dataset, source, f"{where}.datasets[{j}]")
            if dataset in exact_owner:
                raise SettingsError(
                    source,
                    f"{where}.datasets[{j}]",
                    f"dataset {dataset!r} is already governed by DAC {exact_owner[dataset]!r}",
                )
            exact_owner[dataset] = entry.id
        for j, pattern in enumerate(entry.dataset_patterns):
            if not pattern or len(pattern) > 255:
                raise SettingsError(source, f"{where}.dataset_patterns[{j}]", "expected a glob of 1-255 characters")
            compile_pattern(pattern)
        seen_members: set[str] = set()
        for j, member in enumerate(entry.members):
            if not member.identity:
                raise SettingsError(source, f"{where}.members[{j}].identity", "expected a non-empty identity id")
            if member.identity in seen_members:
                raise SettingsError(
                    source, f"{where}.members[{j}].identity", f"{member.identity!r} is listed twice on this DAC"
                )
            seen_members.add(member.identity)
    # One authority per dataset: no exact id of one DAC may match another DAC's pattern.
    for i, entry in enumerate(dac.committees):
        for j, pattern in enumerate(entry.dataset_patterns):
            glob = compile_pattern(pattern)
            for dataset, owner in exact_owner.items():
                if owner != entry.id and glob.matches(dataset):
                    raise SettingsError(
                        source,
                        f"{key}.committees[{i}].dataset_patterns[{j}]",
                        f"matches dataset {dataset!r}, which DAC {owner!r} governs",
                    )


def check_visa_sources(
    sources: list[VisaSourceSettings], source: str, allow_http_loopback: bool, key: str = "visa_sources"
) -> None:
    """Every rule of the module docstring for ``visa_sources:``."""
    from broker.config import SettingsError
    from broker.trust.fetch import FetchError, check_url

    names: set[str] = set()
    for i, item in enumerate(sources):
        where = f"{key}[{i}]"
        if not ID_PATTERN.fullmatch(item.name):
            raise SettingsError(source, f"{where}.name", "expected 1-64 letters, digits, '.', '_' or '-'")
        if item.name in names:
            raise SettingsError(source, f"{where}.name", f"source name {item.name!r} is used twice")
        names.add(item.name)
        if item.url.count(USER_PLACEHOLDER) != 1:
            raise SettingsError(source, f"{where}.url", "expected exactly one {user} in the URL template")
        scheme_and_host = item.url.split(USER_PLACEHOLDER, 1)[0]
        if scheme_and_host.count("/") < 3:
            raise SettingsError(source, f"{where}.url", "{user} must be in the path, after the host")
        try:
            check_url(item.url.replace(USER_PLACEHOLDER, "u"), allow_http_loopback)
        except FetchError as exc:
            raise SettingsError(source, f"{where}.url", str(exc)) from None
        if item.send == "upstream_sub" and not item.upstream_issuer:
            raise SettingsError(source, f"{where}.upstream_issuer", "required when send is upstream_sub")
        if item.timeout_seconds <= 0 or item.timeout_seconds > 60:
            raise SettingsError(source, f"{where}.timeout_seconds", "expected more than 0 and at most 60 seconds")
        if item.cache_ttl_seconds < 0:
            raise SettingsError(source, f"{where}.cache_ttl_seconds", "expected 0 (no cache) or more seconds")
        if item.max_response_bytes <= 0:
            raise SettingsError(source, f"{where}.max_response_bytes", "expected a number greater than 0")
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", item.auth_header_name):
            raise SettingsError(source, f"{where}.auth_header_name", "expected an HTTP header name")
        if item.auth_header is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in item.auth_header):
            raise SettingsError(source, f"{where}.auth_header", "must not contain control characters")


def _check_url_claim(url: str, source: str, key: str) -> None:
    from broker.config import SettingsError

    if len(url) > MAX_URL_CLAIM_CHARS:
        raise SettingsError(source, key, f"expected at most {MAX_URL_CLAIM_CHARS} characters (a URL claim)")
    if not _is_https_url(url):
        raise SettingsError(source, key, "expected an absolute https:// URL with no whitespace")


def _check_template(template: str, source: str, key: str) -> None:
    from broker.config import SettingsError

    if template.count(DATASET_PLACEHOLDER) != 1:
        raise SettingsError(source, key, "expected exactly one {dataset} in the template")
    sample = template.replace(DATASET_PLACEHOLDER, "d")
    if not _is_https_url(sample):
        raise SettingsError(source, key, "expected an https:// URL template")


def _check_dataset_id(dataset: str, source: str, key: str) -> None:
    from broker.config import SettingsError
    from broker.dac.committees import check_dataset_id
    from broker.dac.errors import ValidationError

    try:
        check_dataset_id(dataset)
    except ValidationError as exc:
        raise SettingsError(source, key, str(exc)) from None
