"""The ``dac:`` settings section: data access committees, site admins and the bounds on grants.

What a type cannot say is checked by :func:`check_dac_settings`, which raises
:class:`~broker.settings_model.SettingsProblem` naming the key:

- a DAC ``source`` is an absolute https URL of at most 255 characters (Passport 1.2, URL
  claims; THREAT-MODEL UI-12), unique among DACs; ids are unique and plain;
- a dataset is governed by at most one DAC (an exact id listed twice, or an id listed by one
  DAC and matched by another's pattern, is refused: one authority per dataset, GA-12);
- a member is listed once per DAC; roles are ``member`` or ``chair``;
- the dataset URL template holds ``{dataset}`` exactly once and yields an https URL.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr

from broker.core.conditions import compile_pattern
from broker.settings_model import SettingsModel, SettingsProblem

MAX_URL_CLAIM_CHARS = 255
MAX_DATASET_ID_CHARS = 128
DATASET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:~+/-]*")
# Dataset names under this prefix are reserved for the broker's own records.
RESERVED_PREFIX = "ga4gh-broker:"
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DATASET_PLACEHOLDER = "{dataset}"


class DacMemberSettings(SettingsModel):
    """A broker identity on a DAC: ``member`` decides applications, renews and revokes; ``chair`` also
    grants directly (never to themselves) and manages members."""

    identity: str = Field(description="The member's broker identity id (their sub at this broker).")
    role: Literal["member", "chair"] = Field(
        "member", description="member: decides applications. chair: also grants directly and manages members."
    )


#: The DUO research-purpose terms an application may declare when a DAC lists none of its own.
DEFAULT_PURPOSE_CODES = ("DUO:0000042", "DUO:0000006", "DUO:0000007", "DUO:0000011")
DUO_CODE = re.compile(r"DUO:[0-9]{7}")
#: The fields an application form may hold (a DAC's ``application.fields`` picks and orders them).
FORM_FIELDS = ("title", "purpose", "institution", "co_applicants", "terms")


class DatasetTermsSettings(SettingsModel):
    """The versioned terms (licence) a researcher accepts for the datasets they apply for."""

    datasets: list[str] = Field(description="Exact dataset ids or Passport globs these terms cover.")
    version: str = Field(description="The version the applicant accepts (a new version needs a new acceptance).")
    title: str = Field("Terms of use", description="Shown on the form.")
    text: str = Field("", description="The licence text, shown on the form.")
    url: str | None = Field(None, description="Or a https URL of the licence.")


class FormFieldSettings(SettingsModel):
    """One field of a DAC's application form."""

    name: Literal["title", "purpose", "institution", "co_applicants", "terms"] = Field(description="Which field.")
    label: str = Field("", description="Shown on the form; a default label when empty.")
    required: bool = Field(True, description="Whether an application can be submitted without it.")


def _default_fields() -> list[FormFieldSettings]:
    return [
        FormFieldSettings(name="title"),
        FormFieldSettings(name="purpose"),
        FormFieldSettings(name="institution"),
        FormFieldSettings(name="co_applicants", required=False),
        FormFieldSettings(name="terms"),
    ]


class ApplicationSettings(SettingsModel):
    """How a DAC takes applications: its form, its terms and how many members must approve."""

    required_approvals: int = Field(
        1, ge=1, le=10, description="Distinct approving members a decision needs (2: four eyes)."
    )
    fields: list[FormFieldSettings] = Field(default_factory=_default_fields, description="The form, in order.")
    purpose_codes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PURPOSE_CODES), description="DUO purpose terms an applicant may pick."
    )
    terms: list[DatasetTermsSettings] = Field(default_factory=list, description="Versioned terms per dataset.")
    default_grant_days: float = Field(365.0, gt=0, description="The end an approver is offered (days from now).")


class DacEntrySettings(SettingsModel):
    """One data access committee: who it is, what it governs, who sits on it."""

    id: str = Field(description="1-64 letters, digits, '.', '_' or '-'.")
    source: str = Field(description="The source claim of every visa it issues: its persistent https URL.")
    name: str = Field("", description="Shown on pages.")
    datasets: list[str] = Field(default_factory=list, description="Exact dataset ids it governs.")
    dataset_patterns: list[str] = Field(default_factory=list, description="Passport globs (? and *) of datasets.")
    dataset_url_template: str | None = Field(None, description="Overrides dac.dataset_url_template for this DAC.")
    members: list[DacMemberSettings] = Field(default_factory=list, description="Members declared here.")
    application: ApplicationSettings = Field(
        default_factory=ApplicationSettings, description="How this DAC takes applications for access."
    )


class NotificationSettings(SettingsModel):
    """E-mail about applications through an SMTP server (off while ``smtp_host`` is unset)."""

    smtp_host: str | None = Field(None, description="The SMTP server; unset: no e-mail is sent.")
    smtp_port: int = Field(25, gt=0, lt=65536, description="Its port (587 with starttls, 465 with tls).")
    security: Literal["none", "starttls", "tls"] = Field("none", description="How the connection is protected.")
    username: str | None = Field(None, description="SMTP login, when the server asks for one.")
    password: SecretStr | None = Field(None, description="SMTP password (never logged, never in a message).")
    sender: str = Field("ga4gh-broker@localhost", description="The From address.")
    attempts: int = Field(4, ge=1, le=20, description="Tries per message before it is given up (logged).")
    retry_seconds: float = Field(5.0, gt=0, description="Wait before the first retry; doubled each time.")
    timeout_seconds: float = Field(10.0, gt=0, description="Connect and reply timeout of one attempt.")


class DacSettings(SettingsModel):
    """Every DAC, the site admins, and the bounds on what DACs grant."""

    committees: list[DacEntrySettings] = Field(default_factory=list, description="The data access committees.")
    admins: list[str] = Field(default_factory=list, description="Broker identity ids with the site admin role.")
    dataset_url_template: str | None = Field(
        None,
        description="The visa value of a grant: this template with the dataset id percent-encoded; "
        "default <issuer>/datasets/{dataset}.",
    )
    visa_lifetime_seconds: int = Field(
        3600,
        gt=0,
        description="Lifetime of the ControlledAccessGrants visas we mint (exp = min(grant end, now + this)).",
    )
    max_grant_days: float = Field(5 * 365.0, gt=0, description="The longest grant a DAC may give.")
    registered_access_source: str | None = Field(
        None, description="source of registered-access visas the site decides; default: our issuer without '/'."
    )
    registered_access_days: float = Field(
        365.0, gt=0, description="How long a registered-access record lasts (terms accepted, researcher status)."
    )
    notifications: NotificationSettings = Field(
        default_factory=NotificationSettings, description="E-mail about applications (SMTP)."
    )


# --------------------------------------------------------------------------- derived values


def default_dataset_url_template(issuer: str) -> str:
    return issuer.rstrip("/") + "/datasets/" + DATASET_PLACEHOLDER


def registered_access_source(dac: DacSettings, issuer: str) -> str:
    return dac.registered_access_source or issuer.rstrip("/")


def _is_https_url(url: str) -> bool:
    return bool(re.fullmatch(r"https://[A-Za-z0-9.\-\[\]:]+(/[^\s\x00-\x1f\x7f]*)?", url))


# --------------------------------------------------------------------------- cross-field checks


def check_dac_settings(dac: DacSettings, issuer: str, key: str = "dac") -> None:
    """Every rule of the module docstring for ``dac:``; :class:`SettingsProblem` at the first broken one."""
    if dac.registered_access_source is not None:
        _check_url_claim(dac.registered_access_source, f"{key}.registered_access_source")
    template = dac.dataset_url_template or default_dataset_url_template(issuer)
    if dac.dataset_url_template is not None:
        _check_template(template, f"{key}.dataset_url_template")
    for i, admin in enumerate(dac.admins):
        if not isinstance(admin, str) or not admin:
            raise SettingsProblem(f"{key}.admins[{i}]", "expected a non-empty identity id")
    ids: set[str] = set()
    sources: set[str] = set()
    exact_owner: dict[str, str] = {}
    for i, entry in enumerate(dac.committees):
        where = f"{key}.committees[{i}]"
        if not ID_PATTERN.fullmatch(entry.id):
            raise SettingsProblem(f"{where}.id", "expected 1-64 letters, digits, '.', '_' or '-'")
        if entry.id in ids:
            raise SettingsProblem(f"{where}.id", f"DAC id {entry.id!r} is used twice")
        ids.add(entry.id)
        _check_url_claim(entry.source, f"{where}.source")
        if entry.source in sources:
            raise SettingsProblem(f"{where}.source", "two DACs cannot share one source URL")
        sources.add(entry.source)
        if entry.dataset_url_template is not None:
            _check_template(entry.dataset_url_template, f"{where}.dataset_url_template")
        for j, dataset in enumerate(entry.datasets):
            _check_dataset_id(dataset, f"{where}.datasets[{j}]")
            if dataset in exact_owner:
                raise SettingsProblem(
                    f"{where}.datasets[{j}]",
                    f"dataset {dataset!r} is already governed by DAC {exact_owner[dataset]!r}",
                )
            exact_owner[dataset] = entry.id
        for j, pattern in enumerate(entry.dataset_patterns):
            if not pattern or len(pattern) > 255:
                raise SettingsProblem(f"{where}.dataset_patterns[{j}]", "expected a glob of 1-255 characters")
            compile_pattern(pattern)
        seen_members: set[str] = set()
        for j, member in enumerate(entry.members):
            if not member.identity:
                raise SettingsProblem(f"{where}.members[{j}].identity", "expected a non-empty identity id")
            if member.identity in seen_members:
                raise SettingsProblem(
                    f"{where}.members[{j}].identity", f"{member.identity!r} is listed twice on this DAC"
                )
            seen_members.add(member.identity)
        _check_application(entry.application, f"{where}.application")
    # One authority per dataset: no exact id of one DAC may match another DAC's pattern.
    for i, entry in enumerate(dac.committees):
        for j, pattern in enumerate(entry.dataset_patterns):
            glob = compile_pattern(pattern)
            for dataset, owner in exact_owner.items():
                if owner != entry.id and glob.matches(dataset):
                    raise SettingsProblem(
                        f"{key}.committees[{i}].dataset_patterns[{j}]",
                        f"matches dataset {dataset!r}, which DAC {owner!r} governs",
                    )


def _check_application(app: ApplicationSettings, key: str) -> None:
    names = [f.name for f in app.fields]
    for j, name in enumerate(names):
        if name in names[:j]:
            raise SettingsProblem(f"{key}.fields[{j}].name", f"field {name!r} is listed twice")
    for j, code in enumerate(app.purpose_codes):
        if not DUO_CODE.fullmatch(code):
            raise SettingsProblem(f"{key}.purpose_codes[{j}]", "expected a DUO term id like DUO:0000042")
    for j, terms in enumerate(app.terms):
        if not terms.version or len(terms.version) > 64:
            raise SettingsProblem(f"{key}.terms[{j}].version", "expected 1-64 characters")
        if not terms.datasets:
            raise SettingsProblem(f"{key}.terms[{j}].datasets", "expected at least one dataset id or glob")
        for d, pattern in enumerate(terms.datasets):
            if not pattern or len(pattern) > 255:
                raise SettingsProblem(f"{key}.terms[{j}].datasets[{d}]", "expected a glob of 1-255 characters")
            compile_pattern(pattern)
        if terms.url is not None and not _is_https_url(terms.url):
            raise SettingsProblem(f"{key}.terms[{j}].url", "expected an absolute https:// URL")
        if not terms.text and terms.url is None:
            raise SettingsProblem(f"{key}.terms[{j}]", "give the licence text or its url")


def _check_url_claim(url: str, key: str) -> None:
    if len(url) > MAX_URL_CLAIM_CHARS:
        raise SettingsProblem(key, f"expected at most {MAX_URL_CLAIM_CHARS} characters (a URL claim)")
    if not _is_https_url(url):
        raise SettingsProblem(key, "expected an absolute https:// URL with no whitespace")


def _check_template(template: str, key: str) -> None:
    if template.count(DATASET_PLACEHOLDER) != 1:
        raise SettingsProblem(key, "expected exactly one {dataset} in the template")
    sample = template.replace(DATASET_PLACEHOLDER, "d")
    if not _is_https_url(sample):
        raise SettingsProblem(key, "expected an https:// URL template")


def dataset_id_problem(dataset: object) -> tuple[str, str] | None:
    """What is wrong with ``dataset`` as a dataset id (message, short label), or None.

    Hand-written on purpose: a dataset id becomes part of a URL claim and of store keys, so
    the accepted alphabet is small and explicit, with a reserved prefix.
    """
    if not isinstance(dataset, str) or not dataset:
        return "dataset must be a non-empty string", "required"
    if len(dataset) > MAX_DATASET_ID_CHARS:
        return f"dataset id is longer than {MAX_DATASET_ID_CHARS} characters", "too long"
    if dataset.startswith(RESERVED_PREFIX):
        return "dataset ids starting with 'ga4gh-broker:' are reserved", "reserved"
    if not DATASET_ID.fullmatch(dataset):
        return (
            "dataset id may hold only letters, digits and . _ : ~ + / - (starting with a letter or digit)",
            "invalid characters",
        )
    return None


def _check_dataset_id(dataset: str, key: str) -> None:
    problem = dataset_id_problem(dataset)
    if problem is not None:
        raise SettingsProblem(key, problem[0])
