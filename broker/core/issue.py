"""Issuing: visas and passports signed with our key ring (Passport 1.2, AAI 1.2).

What we put in every token, and why:

- Visas are Visa Document Tokens (Broker checklist B17-B24): header ``typ``
  ``vnd.ga4gh.visa+jwt``, ``alg`` and ``kid`` of the active key (set by the key ring), ``jku``
  = our published JWKS (:func:`broker.core.models.own_jwks_url`); payload ``iss``, ``sub``,
  ``iat``, ``exp``, ``jti`` and ``ga4gh_visa_v1``. No ``scope`` at all (so never ``openid``).
- A visa's ``exp`` is never later than the assertion's own end (``assertion_end``, e.g. the
  end of a DAC grant): the spec lets an issuer shorten an assertion's life, never extend
  it. It is also never later than ``keys.max_token_lifetime_seconds`` from now, the time
  our key ring promises to keep publishing a retired key: a token that outlived the
  publication of its key could no longer be verified.
- Passports: header ``typ`` exactly ``vnd.ga4gh.passport+jwt`` (B14); payload ``iss``, ``sub``,
  ``iat``, ``exp``, ``jti``, ``ga4gh_passport_v1`` (the visa JWS strings passed on byte for
  byte, B16; ``[]`` allowed) and ``aud`` when the caller narrows the audience (B15).
  ``not_after_visas`` keeps the passport from outliving the earliest of its visas.

The visa object is checked before signing, with the same rules the verifier applies
(required members, URL claims of at most 255 characters, ``by`` vocabulary and where it is
required, well-formed ``conditions``), so we never sign what a strict clearinghouse,
including ours, would refuse. Mistakes raise :class:`IssueError` (a ``ValueError``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from broker.core.conditions import conditions_from_claim
from broker.core.jose import JoseError, parse
from broker.core.models import (
    AFFILIATION_AND_ROLE,
    BY_REQUIRED_TYPES,
    BY_VALUES,
    PASSPORT_CLAIM,
    PASSPORT_TYP,
    STANDARD_TYPES,
    URL_VALUE_TYPES,
    VISA_CLAIM,
    VISA_TYP,
    VisaObject,
    own_jwks_url,
)
from broker.core.verify import URL_CLAIM
from broker.errors import BrokerError

#: The longest URL claim the spec allows (Passport 1.2, URL Claims).
MAX_URL_CHARS = 255


class IssueError(BrokerError, ValueError):
    """We refuse to sign this: the message says which rule it breaks."""

    status = 400
    code = "cannot_issue"


class Signer(Protocol):
    """What issuing needs from :class:`broker.keys.ring.KeyRing`."""

    @property
    def max_token_lifetime_seconds(self) -> int: ...

    def sign(
        self, payload: dict[str, Any], typ: str, headers: dict[str, Any] | None = None, now: int | None = None
    ) -> str: ...


def mint_visa(
    keyring: Signer,
    issuer: str,
    sub: str,
    visa: VisaObject,
    exp: int,
    now: int | None = None,
    jti: str | None = None,
    assertion_end: int | None = None,
) -> str:
    """A visa JWT for ``sub`` asserting ``visa``, signed by our active key.

    ``exp`` is clamped to ``assertion_end`` (when given) and to the key ring's maximum token
    lifetime; a visa that would be expired when issued is refused. ``jti`` defaults to a
    random UUID.
    """
    at = int(time.time()) if now is None else int(now)
    _check_string(issuer, "issuer")
    _check_string(sub, "sub")
    check_visa_object(visa, at)
    end = min(int(exp), at + _max_lifetime(keyring))
    if assertion_end is not None:
        end = min(end, int(assertion_end))
    if end <= at:
        raise IssueError("the visa would be expired when issued (exp or assertion end is not in the future)")
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "iat": at,
        "exp": end,
        "jti": jti or uuid.uuid4().hex,
        VISA_CLAIM: visa.to_claim(),
    }
    return keyring.sign(payload, VISA_TYP, {"jku": own_jwks_url(issuer)}, now=at)


def mint_passport(
    keyring: Signer,
    issuer: str,
    sub: str,
    visas: Sequence[str],
    lifetime: int,
    audience: str | Sequence[str] | None = None,
    now: int | None = None,
    jti: str | None = None,
    not_after_visas: bool = False,
) -> str:
    """A passport JWT carrying ``visas`` unchanged, valid ``lifetime`` seconds.

    ``lifetime`` is clamped to the key ring's maximum token lifetime. With
    ``not_after_visas`` the passport's ``exp`` is also at most the earliest visa ``exp``
    (read from the visas without verifying them: it can only shorten the passport).
    """
    at = int(time.time()) if now is None else int(now)
    _check_string(issuer, "issuer")
    _check_string(sub, "sub")
    if isinstance(visas, str) or not all(isinstance(v, str) and v for v in visas):
        raise IssueError(f"{PASSPORT_CLAIM} must be a list of visa JWS strings")
    if lifetime <= 0:
        raise IssueError("passport lifetime must be greater than 0")
    exp = at + min(int(lifetime), _max_lifetime(keyring))
    if not_after_visas and visas:
        exp = min(exp, *(_visa_exp(v) for v in visas))
    if exp <= at:
        raise IssueError("the passport would be expired when issued (a visa has already expired)")
    payload: dict[str, Any] = {"iss": issuer, "sub": sub, "iat": at, "exp": exp, "jti": jti or uuid.uuid4().hex}
    if audience is not None:
        if isinstance(audience, str):
            _check_string(audience, "audience")
            payload["aud"] = audience
        else:
            names = list(audience)
            if not names or not all(isinstance(a, str) and a for a in names):
                raise IssueError("audience must be a non-empty string or a non-empty list of them")
            payload["aud"] = names
    payload[PASSPORT_CLAIM] = list(visas)
    return keyring.sign(payload, PASSPORT_TYP, None, now=at)


def check_visa_object(visa: VisaObject, now: int) -> None:
    """Raise :class:`IssueError` unless ``visa`` is a visa object a strict clearinghouse accepts."""
    for name in ("type", "value", "source"):
        _check_string(getattr(visa, name), f"{VISA_CLAIM}.{name}")
    if type(visa.asserted) is not int or not 0 < visa.asserted <= now:
        raise IssueError(f"{VISA_CLAIM}.asserted must be a positive integer, not after the time of issue")
    if visa.type not in STANDARD_TYPES:
        _check_url(visa.type, "type (a custom visa type must be a URL)")
    _check_url(visa.source, "source")
    if visa.type in URL_VALUE_TYPES:
        _check_url(visa.value, f"value (a {visa.type} value is a URL)")
    if visa.type == AFFILIATION_AND_ROLE:
        role, at, org = visa.value.partition("@")
        if not (role and at and org):
            raise IssueError(f"{VISA_CLAIM}.value of {AFFILIATION_AND_ROLE} must be <role>@<affiliation>")
    if visa.by is None:
        if visa.type in BY_REQUIRED_TYPES:
            raise IssueError(f"{VISA_CLAIM}.by is required for {visa.type}")
    elif visa.by not in BY_VALUES:
        raise IssueError(f"{VISA_CLAIM}.by must be one of {sorted(BY_VALUES)}")
    if visa.conditions is not None:
        try:
            conditions_from_claim(visa.to_claim()["conditions"])
        except ValueError as exc:
            raise IssueError(f"{VISA_CLAIM}.conditions: {exc}") from None


def _max_lifetime(keyring: Signer) -> int:
    return int(keyring.max_token_lifetime_seconds)


def _check_string(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise IssueError(f"{what} must be a non-empty string")


def _check_url(value: str, what: str) -> None:
    if len(value) > MAX_URL_CHARS:
        raise IssueError(f"{VISA_CLAIM}.{what}: {len(value)} characters, limit {MAX_URL_CHARS}")
    if URL_CLAIM.fullmatch(value) is None:
        raise IssueError(f"{VISA_CLAIM}.{what} must be an absolute http(s) URL")


def _visa_exp(token: str) -> int:
    try:
        exp = parse(token, max_bytes=len(token) + 1, max_depth=64).payload.get("exp")
    except JoseError as exc:
        raise IssueError(f"a visa does not parse ({exc.reason})") from None
    if type(exp) is not int:
        raise IssueError("a visa has no integer exp")
    return exp
