"""GA4GH Passport 1.2 records: the visa object, visas, passports, and rejection reasons.

These types are the language every other part of the broker speaks (verification,
conditions, identities, policy, gateway). They are plain frozen dataclasses with no
behaviour beyond small derived properties; parsing and checking live in ``verify.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from broker.errors import BrokerError

# Standard visa types (Passport 1.2, "GA4GH Standard Visa Type Definitions").
AFFILIATION_AND_ROLE = "AffiliationAndRole"
ACCEPTED_TERMS_AND_POLICIES = "AcceptedTermsAndPolicies"
RESEARCHER_STATUS = "ResearcherStatus"
CONTROLLED_ACCESS_GRANTS = "ControlledAccessGrants"
LINKED_IDENTITIES = "LinkedIdentities"
STANDARD_TYPES: frozenset[str] = frozenset(
    {AFFILIATION_AND_ROLE, ACCEPTED_TERMS_AND_POLICIES, RESEARCHER_STATUS, CONTROLLED_ACCESS_GRANTS, LINKED_IDENTITIES}
)
# Types whose visa object MUST carry `by` (Passport 1.2 section on each type).
BY_REQUIRED_TYPES: frozenset[str] = frozenset({ACCEPTED_TERMS_AND_POLICIES, CONTROLLED_ACCESS_GRANTS})
# Types whose `value` is a URL claim (255 characters at most, compared as opaque strings).
URL_VALUE_TYPES: frozenset[str] = frozenset({ACCEPTED_TERMS_AND_POLICIES, RESEARCHER_STATUS, CONTROLLED_ACCESS_GRANTS})
BY_VALUES: frozenset[str] = frozenset({"self", "peer", "system", "so", "dac"})

NO_ORGANIZATION = "https://no.organization"
REGISTERED_ACCESS_DOI = "https://doi.org/10.1038/s41431-018-0219-y"

# JOSE header `typ` per token class (DESIGN rule 4: every verifier accepts exactly its own).
PASSPORT_TYP = "vnd.ga4gh.passport+jwt"
VISA_TYP = "vnd.ga4gh.visa+jwt"
ACCESS_TOKEN_TYP = "at+jwt"

PASSPORT_SCOPE = "ga4gh_passport_v1"
PASSPORT_CLAIM = "ga4gh_passport_v1"
VISA_CLAIM = "ga4gh_visa_v1"
PASSPORT_TOKEN_TYPE = "urn:ga4gh:params:oauth:token-type:passport"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"

ALLOWED_ALGORITHMS: frozenset[str] = frozenset({"RS256", "ES256"})


class IdentityBinding(StrEnum):
    """Which visas of a passport count for its holder, as configured per trusted broker (GA-17).

    ``LINKED`` (the default, Passport 1.2 General Requirements 8.4 read strictly, SPEC-DIGEST
    C19): a visa counts when its ``{iss, sub}`` is the passport's, or trusted LinkedIdentities
    visas link the two. ``SAME_SUB``: also any visa (from a trusted issuer) whose ``sub`` is the
    passport's exact ``sub`` string, because the broker vouches that its ``sub`` names one
    person at every issuer it relays (Life Science Login relays REMS visas this way). A visa
    of another ``sub`` never counts without a trusted link, in either mode.
    """

    LINKED = "linked"
    SAME_SUB = "same_sub"


class Reason(StrEnum):
    """Machine-readable reasons a token or visa was rejected or ignored (DESIGN rule 2)."""

    MALFORMED = "malformed"  # not a compact JWS, bad base64url, not JSON, not an object
    TOO_LARGE = "too_large"
    TOO_DEEP = "too_deep"
    TOO_MANY_VISAS = "too_many_visas"
    DUPLICATE_KEY = "duplicate_key"
    BAD_ALG = "bad_alg"
    BAD_TYP = "bad_typ"
    CRIT_UNSUPPORTED = "crit_unsupported"
    EMBEDDED_KEY = "embedded_key"  # jwk / x5c / x5u in the header: never used, always refused
    MISSING_CLAIM = "missing_claim"
    BAD_CLAIM = "bad_claim"  # wrong type or shape of a claim
    URL_TOO_LONG = "url_too_long"
    BY_REQUIRED = "by_required"
    UNTRUSTED_ISSUER = "untrusted_issuer"
    JKU_MISSING = "jku_missing"
    JKU_NOT_ALLOWED = "jku_not_allowed"
    KEY_NOT_FOUND = "key_not_found"
    # No kid where one is required: always on a passport (SPEC-DIGEST C2), and on any token
    # whose issuer publishes more than one key (THREAT-MODEL JWT-04: never "try all keys").
    KID_REQUIRED = "kid_required"
    KEY_FETCH_FAILED = "key_fetch_failed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    ISSUED_IN_FUTURE = "issued_in_future"
    BAD_AUDIENCE = "bad_audience"
    TYPE_NOT_ACCEPTED = "type_not_accepted"  # the issuer is not trusted for this visa type
    SOURCE_NOT_ACCEPTED = "source_not_accepted"
    UNKNOWN_CUSTOM_TYPE = "unknown_custom_type"  # ignored, per Passport 1.2
    CONDITIONS_UNMET = "conditions_unmet"
    ACCESS_TOKEN_FORM = "access_token_form"  # deprecated visa access token form, not supported
    REVOKED = "revoked"
    NOT_LINKED = "not_linked"  # visa identity not linked to the passport holder


@dataclass(frozen=True, slots=True)
class VisaObject:
    """The ``ga4gh_visa_v1`` claim. ``conditions`` is kept as the DNF the issuer wrote."""

    type: str
    asserted: int
    value: str
    source: str
    by: str | None = None
    conditions: tuple[tuple[tuple[tuple[str, str], ...], ...], ...] | None = None

    def to_claim(self) -> dict[str, Any]:
        """The JSON object for a visa JWT payload."""
        out: dict[str, Any] = {"type": self.type, "asserted": self.asserted, "value": self.value, "source": self.source}
        if self.by is not None:
            out["by"] = self.by
        if self.conditions is not None:
            out["conditions"] = [[dict(member) for member in clause] for clause in self.conditions]
        return out


@dataclass(frozen=True, slots=True)
class Visa:
    """A visa JWT whose signature and claims have been checked (or that we are minting)."""

    iss: str
    sub: str
    iat: int
    exp: int
    visa: VisaObject
    raw: str = ""  # the compact JWS exactly as received or signed
    jti: str | None = None
    kid: str | None = None

    @property
    def identity(self) -> tuple[str, str]:
        """The visa identity ``(iss, sub)`` (Passport 1.2, Term Definitions)."""
        return (self.iss, self.sub)

    @property
    def conditioned(self) -> bool:
        return bool(self.visa.conditions)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one token (a visa at ``index`` of a passport, or the passport itself) was refused."""

    reason: Reason
    detail: str
    index: int | None = None  # position in ga4gh_passport_v1; None for the passport itself
    iss: str | None = None
    jti: str | None = None
    type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": str(self.reason), "detail": self.detail}
        for name in ("index", "iss", "jti", "type"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class PassportResult:
    """What the clearinghouse concluded about a passport or a list of visas.

    ``error`` set means the whole passport was refused (EPM e: 401); otherwise each visa
    is either in ``accepted`` or has a ``Rejection`` in ``rejected`` (EPM f: ignored).
    """

    accepted: tuple[Visa, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    error: Rejection | None = None
    iss: str | None = None
    sub: str | None = None
    exp: int | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    # Which visas count for the holder (``iss``/``sub``): the binding of the broker that signed
    # the passport; LINKED for a visa list without a passport.
    identity_binding: IdentityBinding = IdentityBinding.LINKED
    # Each accepted visa carrying conditions -> the accepted visas its conditions were met with
    # (satisfiers and the LinkedIdentities visas linking them); its expiry is the minimum exp
    # over itself and these (SPEC-DIGEST C21, see broker.core.verify.effective_exp).
    relies_on: dict[Visa, tuple[Visa, ...]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class KeyResolutionError(BrokerError):
    """No key for this token (raised by key resolution, :mod:`broker.trust`).

    ``reason`` is the machine-readable code, ``detail`` says why.

    The detail never carries key material or token contents beyond a short, escaped
    excerpt of the header value concerned (``kid``, ``jku``, ``iss``).
    """

    status = 401
    code = "invalid_token"

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def own_jwks_url(issuer: str) -> str:
    """Where a broker publishes its JWKS; the visas it mints carry exactly this string as ``jku``."""
    return issuer.rstrip("/") + "/.well-known/jwks.json"
