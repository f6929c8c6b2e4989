"""The gateway's real authorizer: GA4GH passports and our own access tokens, then the policy.

Credentials, in the order a request carries them (``Authorization: Bearer`` first, then the
``passports`` of a DRS POST body):

- a passport JWT (header ``typ`` ``vnd.ga4gh.passport+jwt``): checked by the GA4GH engine
  (:meth:`broker.core.verify.Verifier.verify_passport`) against the trust configuration;
  the holder is the passport's ``iss``/``sub``, and the identity binding of the broker that
  signed it (``trust.brokers[].identity_binding``, carried in ``PassportResult``) says whether
  visas of that ``sub`` from other issuers count as the holder's own;
- one of our access tokens (``typ`` ``at+jwt``) with scope ``ga4gh_passport_v1``: checked by
  ``check_access_token`` (live, not revoked, grant not revoked), and the broker resolves the
  holder's visas itself (``visas_for``), which the engine then checks like any others
  (:meth:`~broker.core.verify.Verifier.verify_visas`); the holder is our issuer and the
  token's ``sub``.

The header ``typ`` is read without trusting it, only to pick the checker: each checker then
accepts exactly its own token class (DESIGN rule 4), so a visa, an ID token or anything else
presented as a bearer is refused (401 ``invalid_token``).

Then the policy decides (:meth:`broker.core.policy.compile.PolicySet.decide`) on the accepted
visas and the data-use purpose the request declared (``purpose``, a DUO/MONDO term the gateway
has already checked for shape; a dataset with ``data_use`` denies ``purpose_missing``,
``purpose_unknown`` or ``purpose_incompatible`` without a compatible one).
An allow carries the visas used (by ``jti``), the policy's basis and an expiry that
never outlives the credential; a deny carries the policy's first reason code and the
required-visas document. When the holder is one of our own accounts, a deny is decided once
more with the visas its revoked DAC grants gave (``withdrawn_for``), so that a requirement
only such a visa would meet is denied ``grant_revoked`` rather than ``missing_visa``; those
visas are never used for an allow. A refused credential is a 401 for the whole request (THREAT-MODEL
EPM e), even when another credential in a DRS body would pass; of several credentials that
all verify, the first one the policy allows wins.

With a :class:`~broker.gateway.decision_cache.DecisionCache` (``decisions``), an allow is
reused for the same credentials, dataset, object, action and purpose under the same policy
set and revocation epoch (see that module for when a hit is sound); on a hit our access
tokens still get their per-use store checks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from broker.core.models import ACCESS_TOKEN_TYP, PASSPORT_SCOPE, PASSPORT_TYP, PassportResult
from broker.core.policy.decision import Code, Withdrawn
from broker.core.policy.required import UnknownDataset, required_visas
from broker.core.untrusted_json import peek_jws
from broker.core.verify import Verifier
from broker.gateway.authorize import INVALID_TOKEN, MISSING_TOKEN, AccessDecision
from broker.gateway.decision_cache import DecisionCache, credentials_digest

log = logging.getLogger("broker.gateway.passport_authorizer")

MAX_HEADER_CHARS = 2048


class PolicySource(Protocol):
    """Where the rules in force are read (``broker.core.policy.reload.PolicyStore`` is one)."""

    @property
    def current(self) -> Any: ...


class AccessTokenLike(Protocol):
    @property
    def sub(self) -> str: ...

    @property
    def exp(self) -> int: ...

    @property
    def scope(self) -> tuple[str, ...]: ...


@dataclass
class PassportAuthorizer:
    """:class:`broker.gateway.authorize.Authorizer` over the GA4GH engine and the policy engine.

    ``check_access_token`` raises (any exception with a ``reason`` attribute, e.g.
    ``broker.oidc.tokens.InvalidToken``) for a token we do not accept; without it, access
    tokens are refused. ``visas_for`` returns the visa JWTs the broker releases for a token's
    holder. ``audience`` is what passports naming an ``aud`` must name. ``withdrawn_for``
    returns, for one of our accounts, the visas revoked decisions gave it (deny reasons only).
    ``passport_revoked(jti)`` says whether a passport we issued was revoked with the access
    token, grant or consent it was exchanged from; it is asked on every request with such a
    passport, cached verdict or not, so a revocation is never hidden by a cache (issue 11 item 4).
    """

    verifier: Verifier
    policies: PolicySource
    own_issuer: str
    audience: str | None = None
    check_access_token: Callable[[str], AccessTokenLike] | None = None
    visas_for: Callable[[AccessTokenLike], Sequence[str]] | None = None
    withdrawn_for: Callable[[str], Sequence[Withdrawn]] | None = None
    passport_revoked: Callable[[str], bool] | None = None
    clock: Callable[[], float] = time.time
    decisions: DecisionCache | None = None

    def authorize(
        self,
        bearer: str | None,
        dataset: str,
        object_path: str,
        action: str = "read",
        *,
        passports: Sequence[str] = (),
        purpose: str | None = None,
    ) -> AccessDecision:
        credentials = ([bearer] if bearer is not None else []) + list(passports)
        if not credentials:
            return AccessDecision.denied(
                401, MISSING_TOKEN, "A bearer token (a passport or an access token) is required."
            )
        policy = self.policies.current  # one rule set for the whole request
        cache = self.decisions
        if cache is not None:
            key = (credentials_digest(credentials), dataset, object_path, action, purpose)
            epoch = cache.epoch
            hit = cache.get(key, policy)
            if hit is not None:
                refused = self._still_live(credentials) if hit.recheck else None
                return hit.decision if refused is None else refused
            decision = self._decide_all(policy, credentials, dataset, action, purpose)
            if decision.allow:
                # Our access tokens and our own passports are checked again on every hit: their
                # revocation (token, grant family, consent) is not a DAC revocation epoch.
                recheck = any(
                    _header_typ(token) != PASSPORT_TYP or self._own_passport_jti(token) is not None
                    for token in credentials
                )
                cache.put(key, policy, decision, epoch, recheck)
            return decision
        return self._decide_all(policy, credentials, dataset, action, purpose)

    def _own_passport_jti(self, token: str) -> str | None:
        """The jti of a passport this broker issued (read unverified: only for a cache entry the
        exact same bytes already earned by full verification), else None."""
        if self.passport_revoked is None:
            return None
        claims = peek_jws(token, 1)
        if claims is None or claims.get("iss") != self.own_issuer:
            return None
        jti = claims.get("jti")
        return jti if isinstance(jti, str) else None

    def _still_live(self, credentials: Sequence[str]) -> AccessDecision | None:
        """On a cache hit: our access tokens' per-use checks (jti, grant family, consent; the store),
        and whether a passport we issued was revoked with what it was exchanged from."""
        for token in credentials:
            jti = self._own_passport_jti(token) if _header_typ(token) == PASSPORT_TYP else None
            if jti is not None and self.passport_revoked is not None and self.passport_revoked(jti):
                return _invalid("The passport is not accepted (revoked).", "revoked")
            if _header_typ(token) == ACCESS_TOKEN_TYP and self.check_access_token is not None:
                try:
                    self.check_access_token(token)
                except Exception as exc:
                    verdict = getattr(exc, "reason", None)
                    if not isinstance(verdict, str):
                        raise
                    return _invalid(f"The access token is not accepted ({verdict}).", verdict)
        return None

    def _decide_all(
        self, policy: Any, credentials: Sequence[str], dataset: str, action: str, purpose: str | None
    ) -> AccessDecision:
        first_deny: AccessDecision | None = None
        for token in credentials:
            checked = self._credential(token)
            if isinstance(checked, AccessDecision):
                return checked  # a refused credential refuses the request
            result, holder, cap = checked
            decision = self._decide(policy, result, holder, cap, dataset, action, purpose)
            if decision.allow:
                return decision
            first_deny = first_deny or decision
        assert first_deny is not None
        return first_deny

    # ------------------------------------------------------------------ credentials

    def _credential(self, token: str) -> tuple[PassportResult, tuple[str, str], int | None] | AccessDecision:
        typ = _header_typ(token)
        if typ == PASSPORT_TYP:
            result = self.verifier.verify_passport(token, self.audience)
            if result.error is not None or result.iss is None or result.sub is None:
                reason = str(result.error.reason) if result.error is not None else "malformed"
                return _invalid(f"The passport is not accepted ({reason}).", reason)
            if self._revoked_here(result):
                return _invalid("The passport is not accepted (revoked).", "revoked")
            return result, (result.iss, result.sub), result.exp
        if typ == ACCESS_TOKEN_TYP and self.check_access_token is not None and self.visas_for is not None:
            try:
                token_info = self.check_access_token(token)
            except Exception as exc:
                verdict = getattr(exc, "reason", None)
                if not isinstance(verdict, str):
                    raise  # not a verdict on the token: an outage, answered 503 by the gateway
                return _invalid(f"The access token is not accepted ({verdict}).", verdict)
            if PASSPORT_SCOPE not in token_info.scope:
                return AccessDecision.denied(
                    403, "insufficient_scope", f"The access token lacks the {PASSPORT_SCOPE} scope."
                )
            result = self.verifier.verify_visas(list(self.visas_for(token_info)))
            if result.error is not None:
                log.error("the visas released for an access token were refused: %s", result.error.reason)
                return AccessDecision.denied(503, "visas_unavailable", "The holder's visas could not be checked.")
            return result, (self.own_issuer, token_info.sub), token_info.exp
        return _invalid("The bearer token is neither a passport nor an access token of this broker.", "bad_typ")

    def _revoked_here(self, result: PassportResult) -> bool:
        """Whether a passport of ours was revoked with what it was exchanged from (see the class docstring)."""
        jti = result.claims.get("jti")
        if result.iss != self.own_issuer or self.passport_revoked is None or not isinstance(jti, str):
            return False
        return self.passport_revoked(jti)

    # ------------------------------------------------------------------ policy

    def _decide(
        self,
        policy: Any,
        result: PassportResult,
        holder: tuple[str, str],
        cap: int | None,
        dataset: str,
        action: str,
        purpose: str | None = None,
    ) -> AccessDecision:
        now = int(self.clock())
        decision = policy.decide(
            result.accepted,
            dataset=dataset,
            action=action,
            purpose=purpose,
            holder=holder,
            now=now,
            identity_binding=result.identity_binding,
        )
        if (
            not decision.allow
            and _missing(decision)
            and self.withdrawn_for is not None
            and holder[0] == self.own_issuer
        ):
            withdrawn = self.withdrawn_for(holder[1])
            if withdrawn:
                decision = policy.decide(
                    result.accepted,
                    dataset=dataset,
                    action=action,
                    purpose=purpose,
                    holder=holder,
                    now=now,
                    identity_binding=result.identity_binding,
                    withdrawn=withdrawn,
                )
        if decision.allow:
            expires = decision.expires_at
            if cap is not None:
                expires = cap if expires is None else min(expires, cap)
            return AccessDecision.allowed(
                holder[1],
                "allowed",
                "Access granted by the dataset's policy.",
                expires_at=expires,
                visas_used=tuple(b.jti for b in decision.basis if b.jti),
                basis=decision.to_json(),
            )
        reason = decision.reasons[0] if decision.reasons else None
        return AccessDecision.denied(
            403,
            reason.code if reason else "access_denied",
            reason.message if reason else "The dataset's policy does not grant access.",
            subject=holder[1],
            required=_required(policy, dataset, action),
            basis=decision.to_json(),
        )


def _invalid(message: str, reason: str) -> AccessDecision:
    log.info("bearer refused: %s", reason)
    return AccessDecision.denied(401, INVALID_TOKEN, message, basis={"reason": reason})


def _header_typ(token: str) -> str | None:
    """The JOSE header ``typ`` of a compact JWS, read only to route (never trusted)."""
    header = peek_jws(token, 0, MAX_HEADER_CHARS)
    typ = header.get("typ") if header is not None else None
    return typ if isinstance(typ, str) else None


def _missing(decision: Any) -> bool:
    """Whether a deny says a visa is missing (what a revoked grant would explain)."""
    return any(code in (Code.MISSING_VISA, Code.NO_MATCHING_VISA) for code in decision.codes)


def _required(policy: Any, dataset: str, action: str) -> dict[str, Any] | None:
    """The policy's "what would grant access" document, or None for an unknown dataset."""
    try:
        return required_visas(policy, dataset, action)
    except UnknownDataset:
        return None
