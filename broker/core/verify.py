"""The clearinghouse: which visas of a passport (or of a userinfo visa list) can we believe?

Everything here answers with data, never with an exception (DESIGN rules 1 and 2): a
passport that fails its own checks comes back as ``PassportResult.error`` (THREAT-MODEL
EPM e: the request is refused); a visa that fails comes back as a
:class:`~broker.core.models.Rejection` with a machine-readable reason while the rest of the
passport stands (EPM f: the visa is ignored). An unexpected exception while checking one
visa becomes a ``MALFORMED`` rejection of that visa, logged by class name only (a token is
never logged).

The checks, in order, with the Passport Clearinghouse checklist items of SPEC-DIGEST
section 9.2 they implement:

Passport (C2-C5, C22): compact JWS within ``limits.max_passport_bytes`` (strict parsing in
:mod:`broker.core.jose`: alg RS256/ES256 only, no ``crit``, no embedded keys, no duplicate
JSON members, bounded depth); header ``typ`` exactly ``vnd.ga4gh.passport+jwt`` and a
``kid`` (C2: a passport names its key; KID_REQUIRED otherwise, however many keys the broker
publishes); ``iss`` a trusted broker whose key (``resolver.broker_key``) verifies the
signature; ``sub``, ``jti`` non-empty strings; ``iat``/``exp`` integers, ``exp`` not passed and ``iat``/``nbf`` not in
the future (``limits.clock_leeway_seconds``); ``aud``, when present, names the audience we
were given; ``ga4gh_passport_v1`` a list of strings, at most
``limits.max_visas_per_passport``; no ``ga4gh_visa_v1`` claim; ``jti`` not revoked.

Each visa, independently (C7-C10, C12-C17): compact JWS within ``limits.max_visa_bytes``;
``typ`` absent or ``vnd.ga4gh.visa+jwt`` / ``JWT`` (RFC 7515: case-insensitive, optional
``application/`` prefix); a passport or an access token (``at+jwt``) presented as a visa is
type confusion (BAD_TYP). The visa form: a document token names ``jku`` and has no
``openid`` in ``scope``. The deprecated Visa Access Token form (``scope`` with ``openid``,
no ``jku``) is recognised and rejected with ACCESS_TOKEN_FORM: we do not poll issuers'
userinfo endpoints (C11), which its validity depends on, so we cannot accept it. Trust
comes from the visa's own ``iss`` (C9), never from the passport that carried it: the
issuer must be a trusted visa issuer and its key is resolved by ``resolver.visa_key``,
which checks ``jku`` against that issuer's exact allow-list before anything is fetched
(C10). Then the signature; ``iss``, ``sub``, ``jti`` non-empty strings (``jti`` is only
RECOMMENDED by the spec; we require it on visas and passports because revocation and
replay defences key on it, THREAT-MODEL JWT-12/JWT-31); ``iat``, ``exp`` integers (not
booleans, not floats, not past year 9999) with ``exp`` after ``iat``;
``exp``/``iat``/``nbf`` with the leeway; ``aud``
(RFC 7519 section 4.1.3: a visa naming an audience is accepted only for that audience);
``ga4gh_visa_v1`` an object with ``type``, ``asserted`` (integer, not in the future),
``value`` and ``source`` strings; ``by`` in the vocabulary and present for
AcceptedTermsAndPolicies and ControlledAccessGrants (BY_REQUIRED); URL claims (``source``,
URL-typed values, custom type names) absolute http(s) URLs of at most
``limits.max_url_claim_chars``; a custom type must be a URL and is ignored
(UNKNOWN_CUSTOM_TYPE) unless the issuer's ``visa_types`` lists it; the issuer's
``visa_types`` and ``sources`` allow-lists (TYPE_NOT_ACCEPTED, SOURCE_NOT_ACCEPTED, C14);
``conditions`` well formed; ``jti`` not revoked (the ``revoked`` callable).

Conditions (C18): after every visa is checked, a visa with non-empty ``conditions`` is
accepted only if :func:`~broker.core.conditions.evaluate_conditions` finds them met by the
accepted, unconditioned visas of the same passport, combining different visa identities
only where accepted LinkedIdentities visas link them (C19), or, when the passport's broker
binds identities by ``sub`` (``identity_binding: same_sub`` in its trust entry, recorded in
``PassportResult.identity_binding``), where both have the passport's ``sub``; else
CONDITIONS_UNMET. For each accepted conditioned visa, ``PassportResult.relies_on`` records the visas its conditions were
met with (satisfiers and their links): the visa is only as good as those, so its effective
expiry (:func:`effective_exp`) is the minimum ``exp`` over it and them (C21).

Caching: with a :class:`~broker.core.cache.VerifiedCache`, an accepted visa is kept
under the SHA-256 of its bytes and the trust version until its ``exp`` (without its text,
which a hit takes from the token presented: the bytes are the same), and a whole
passport result until the earliest ``exp`` it relies on: the passport's, every accepted
visa's and every visa in ``relies_on`` (not when it holds a rejection that time could
undo, such as a key fetch failure). The entry is indexed by all their ``jti`` values.
Cache hits do not call ``revoked``: revocation reaches cached results through
``VerifiedCache.evict_jti`` (one token) and ``VerifiedCache.evict_jti_prefix`` (every visa
minted from one of our records, whose ``jti`` is ``<record id>.<random>``).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from broker.core.cache import VerifiedCache
from broker.core.conditions import conditions_from_claim, evaluate_conditions
from broker.core.identity_graph import IdentityGraph
from broker.core.jose import JoseError, Jws, parse, verify_signature
from broker.core.limits import LimitSettings
from broker.core.models import (
    AFFILIATION_AND_ROLE,
    BY_REQUIRED_TYPES,
    BY_VALUES,
    LINKED_IDENTITIES,
    PASSPORT_CLAIM,
    PASSPORT_TYP,
    STANDARD_TYPES,
    URL_VALUE_TYPES,
    VISA_CLAIM,
    VISA_TYP,
    IdentityBinding,
    KeyResolutionError,
    PassportResult,
    Reason,
    Rejection,
    Visa,
    VisaObject,
)

log = logging.getLogger("broker.core.verify")

#: Visa header ``typ`` values we accept, lower-cased, without an ``application/`` prefix.
VISA_TYPS: frozenset[str] = frozenset({VISA_TYP, "jwt"})
#: The largest NumericDate we take (9999-12-31T23:59:59Z): anything later is absurd and
#: would crash date conversions downstream (THREAT-MODEL JWT-14).
MAX_NUMERIC_DATE = 253_402_300_799
#: An absolute http(s) URL with a host and no whitespace or control characters.
URL_CLAIM = re.compile(r"https?://[^/?#\s\x00-\x1f\x7f]+[^\s\x00-\x1f\x7f]*")
#: URL claims already found well formed (sources and types repeat across visas): a set
#: lookup instead of a regex per visa. Bounded: cleared when full. Length is checked apart.
GOOD_URL_MEMO_ENTRIES = 4096
_GOOD_URLS: set[str] = set()
#: Rejections that time or a recovering key server can undo: a passport result holding one
#: is not cached, so the next request checks again.
TRANSIENT_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.KEY_FETCH_FAILED,
        Reason.KEY_NOT_FOUND,
        Reason.KID_REQUIRED,  # a kid-less visa passes once its issuer publishes a single key
        Reason.NOT_YET_VALID,
        Reason.ISSUED_IN_FUTURE,
    }
)
#: How the detail of a rejection made from an unexpected exception starts (also transient).
INTERNAL_ERROR = "internal error"


class KeySource(Protocol):
    """What the verifier needs from :class:`broker.trust` key resolution."""

    def visa_key(self, iss: str, jku: str | None, kid: str | None, alg: str) -> Any: ...

    def broker_key(self, iss: str, kid: str | None, alg: str) -> Any: ...


class TrustView(Protocol):
    """What the verifier reads from :class:`broker.trust.config.TrustConfig`."""

    @property
    def version(self) -> str: ...

    def visa_issuer(self, iss: str) -> Any: ...

    def broker(self, iss: str) -> Any: ...


class _Refused(Exception):
    """A check failed; carries the reason and what we know of the token so far."""

    def __init__(
        self, reason: Reason, detail: str, iss: str | None = None, jti: str | None = None, visa_type: str | None = None
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.iss = iss
        self.jti = jti
        self.visa_type = visa_type


class Verifier:
    """Verifies passports and visas against one trust configuration (see the module docstring).

    ``revoked(jti)`` answers whether a token id was revoked; it is called on every cold
    check of a visa or passport that carries a ``jti``. ``clock`` returns epoch seconds.
    With a cache, equal tokens may get the very same result object back: treat results
    (``PassportResult.claims`` included) as read-only. Safe to share between threads.
    """

    def __init__(
        self,
        trust: TrustView,
        resolver: KeySource,
        limits: LimitSettings,
        cache: VerifiedCache | None = None,
        clock: Callable[[], float] = time.time,
        revoked: Callable[[str], bool] | None = None,
    ) -> None:
        self.trust = trust
        self.resolver = resolver
        self.limits = limits
        self.cache = cache
        self.clock = clock
        self.revoked = revoked

    # ------------------------------------------------------------------ public API

    def verify_visa(self, token: str, index: int | None = None, *, audience: str | None = None) -> Visa | Rejection:
        """One visa on its own: the verified :class:`Visa`, or why it is refused.

        Conditions are not evaluated here (they need the other visas of a passport): a
        visa with conditions comes back as a Visa whose ``conditioned`` is true, and only
        :meth:`verify_passport` / :meth:`verify_visas` decide whether they are met.
        """
        return self._visa(token, index, self.clock(), audience, self._version(), {})

    def verify_passport(self, token: str, audience: str | None = None) -> PassportResult:
        """A passport JWT: ``error`` set if the passport itself is refused, else every visa judged."""
        try:
            now = self.clock()
            version = self._version()
            scope = None
            if self.cache is not None and type(token) is str and len(token) <= self.limits.max_passport_bytes:
                scope = f"passport\x00{version}\x00{audience or ''}\x00"
                hit = self.cache.get_token(token, scope, now)
                if hit is not None:
                    return hit  # type: ignore[no-any-return]
            result = self._passport(token, audience, now, version)
            if scope is not None and result.error is None:
                self._remember_passport(token, scope, result, now)
            return result
        except Exception as exc:  # fail closed, never raise past the boundary
            log.error("unexpected %s while verifying a passport", exc.__class__.__name__)
            return PassportResult(error=Rejection(Reason.MALFORMED, f"{INTERNAL_ERROR} ({exc.__class__.__name__})"))

    def verify_visas(self, tokens: Sequence[str], *, audience: str | None = None) -> PassportResult:
        """A list of visa JWTs without a passport envelope (the userinfo flow)."""
        try:
            if isinstance(tokens, str | bytes) or not isinstance(tokens, Sequence):
                return PassportResult(error=Rejection(Reason.BAD_CLAIM, "visas must be a list of strings"))
            if len(tokens) > self.limits.max_visas_per_passport:
                return PassportResult(
                    error=Rejection(
                        Reason.TOO_MANY_VISAS, f"{len(tokens)} visas, limit {self.limits.max_visas_per_passport}"
                    )
                )
            accepted, rejected, relies_on = self._judge_all(tokens, self.clock(), audience, self._version())
            return PassportResult(accepted=accepted, rejected=rejected, relies_on=relies_on)
        except Exception as exc:
            log.error("unexpected %s while verifying a visa list", exc.__class__.__name__)
            return PassportResult(error=Rejection(Reason.MALFORMED, f"{INTERNAL_ERROR} ({exc.__class__.__name__})"))

    # ------------------------------------------------------------------ passports

    def _version(self) -> str:
        return str(self.trust.version)

    def _passport(self, token: str, audience: str | None, now: float, version: str) -> PassportResult:
        limits = self.limits
        iss: str | None = None
        jti: str | None = None
        try:
            jws = parse(token, max_bytes=limits.max_passport_bytes, max_depth=limits.max_json_depth)
            if jws.typ != PASSPORT_TYP:
                raise _Refused(Reason.BAD_TYP, f"passport typ must be {PASSPORT_TYP!r}, got {_show(jws.typ)}")
            if jws.kid is None:
                raise _Refused(Reason.KID_REQUIRED, "passport header has no kid (required for passports)")
            claims = jws.payload
            iss = _required_string(claims, "iss")
            broker = self.trust.broker(iss)
            if broker is None:
                raise _Refused(Reason.UNTRUSTED_ISSUER, f"passport issuer {_show(iss)} is not a trusted broker")
            binding = _binding_of(broker)
            resolved = self.resolver.broker_key(iss, jws.kid, jws.alg)
            verify_signature(jws, resolved.key)
            sub = _required_string(claims, "sub")
            jti = _required_string(claims, "jti")
            exp = self._check_times(claims, now)
            self._check_audience(claims, audience, "passport")
            if VISA_CLAIM in claims:
                raise _Refused(Reason.BAD_TYP, f"a passport must not carry {VISA_CLAIM}")
            visas = claims.get(PASSPORT_CLAIM, _MISSING)
            if visas is _MISSING:
                raise _Refused(Reason.MISSING_CLAIM, f"passport has no {PASSPORT_CLAIM} claim")
            if not isinstance(visas, list):
                raise _Refused(Reason.BAD_CLAIM, f"{PASSPORT_CLAIM} must be an array of strings")
            if len(visas) > limits.max_visas_per_passport:
                raise _Refused(Reason.TOO_MANY_VISAS, f"{len(visas)} visas, limit {limits.max_visas_per_passport}")
            if any(type(v) is not str for v in visas):
                raise _Refused(Reason.BAD_CLAIM, f"{PASSPORT_CLAIM} must be an array of strings")
            if self.revoked is not None and self.revoked(jti):
                raise _Refused(Reason.REVOKED, "passport jti is revoked")
        except _Refused as exc:
            return PassportResult(error=Rejection(exc.reason, exc.detail, iss=iss, jti=jti))
        except (JoseError, KeyResolutionError) as exc:
            return PassportResult(error=Rejection(exc.reason, exc.detail, iss=iss, jti=jti))
        same_sub = sub if binding is IdentityBinding.SAME_SUB else None
        accepted, rejected, relies_on = self._judge_all(visas, now, audience, version, same_sub)
        return PassportResult(
            accepted=accepted,
            rejected=rejected,
            iss=iss,
            sub=sub,
            exp=exp,
            claims=claims,
            relies_on=relies_on,
            identity_binding=binding,
        )

    def _remember_passport(self, token: str, scope: str, result: PassportResult, now: float) -> None:
        assert self.cache is not None
        if result.exp is None or any(
            r.reason in TRANSIENT_REASONS or r.detail.startswith(INTERNAL_ERROR) for r in result.rejected
        ):
            return
        relied: list[Visa] = [*result.accepted]
        for used in result.relies_on.values():
            relied.extend(used)
        expires = min([result.exp, *(v.exp for v in relied)])
        jtis = [result.claims.get("jti"), *(v.jti for v in relied)]
        self.cache.put_token(token, scope, result, expires, jtis, now)

    # ------------------------------------------------------------------ visa lists

    def _judge_all(
        self, tokens: Sequence[Any], now: float, audience: str | None, version: str, same_sub: str | None = None
    ) -> tuple[tuple[Visa, ...], tuple[Rejection, ...], dict[Visa, tuple[Visa, ...]]]:
        """Judge each visa alone, then the conditions of the conditioned ones (C18).

        Returns the accepted visas, the rejections, and for each accepted conditioned visa the
        visas its conditions were met with (see ``PassportResult.relies_on``). ``same_sub``: the
        passport's ``sub`` when its broker binds identities by ``sub`` (then visas of that ``sub``
        may meet each other's conditions whatever their issuers).
        """
        keys: dict[tuple[str, str | None, str | None, str], Any] = {}
        verdicts: list[Visa | Rejection] = []
        conditioned = False
        for index, token in enumerate(tokens):
            verdict = self._visa(token, index, now, audience, version, keys)
            if type(verdict) is Visa and verdict.visa.conditions:
                conditioned = True
            verdicts.append(verdict)
        relies_on: dict[Visa, tuple[Visa, ...]] = {}
        if conditioned:
            verdicts, relies_on = _apply_conditions(verdicts, same_sub)
        accepted: list[Visa] = []
        rejected: list[Rejection] = []
        for verdict in verdicts:
            if type(verdict) is Visa:
                accepted.append(verdict)
            else:
                rejected.append(verdict)  # type: ignore[arg-type]
        return tuple(accepted), tuple(rejected), relies_on

    # ------------------------------------------------------------------ one visa

    def _visa(
        self,
        token: Any,
        index: int | None,
        now: float,
        audience: str | None,
        version: str,
        keys: dict[tuple[str, str | None, str | None, str], Any],
    ) -> Visa | Rejection:
        try:
            scope = None
            if self.cache is not None and type(token) is str and len(token) <= self.limits.max_visa_bytes:
                scope = f"visa\x00{version}\x00{audience or ''}\x00"
                hit = self.cache.get_token(token, scope, now)
                if hit is not None:  # cached without its text (memory); the text is this token
                    return Visa(hit.iss, hit.sub, hit.iat, hit.exp, hit.visa, token, hit.jti, hit.kid)
            visa = self._check_visa(token, now, audience, keys)
            if scope is not None:
                bare = Visa(visa.iss, visa.sub, visa.iat, visa.exp, visa.visa, "", visa.jti, visa.kid)
                self.cache.put_token(token, scope, bare, visa.exp, (visa.jti,), now)  # type: ignore[union-attr]
            return visa
        except _Refused as exc:
            return Rejection(exc.reason, exc.detail, index, exc.iss, exc.jti, exc.visa_type)
        except (JoseError, KeyResolutionError) as exc:
            return Rejection(exc.reason, exc.detail, index)
        except Exception as exc:
            log.error("unexpected %s while verifying visa %s", exc.__class__.__name__, index)
            return Rejection(Reason.MALFORMED, f"{INTERNAL_ERROR} ({exc.__class__.__name__})", index)

    def _check_visa(
        self, token: Any, now: float, audience: str | None, keys: dict[tuple[str, str | None, str | None, str], Any]
    ) -> Visa:
        limits = self.limits
        jws = parse(token, max_bytes=limits.max_visa_bytes, max_depth=limits.max_json_depth)
        typ = jws.typ
        if typ is not None:
            folded = typ.lower()
            if folded.startswith("application/"):
                folded = folded[12:]
            if folded not in VISA_TYPS:
                raise _Refused(Reason.BAD_TYP, f"visa typ {_show(typ)} is not {VISA_TYP!r} or 'JWT'")
        claims = jws.payload
        if PASSPORT_CLAIM in claims:
            raise _Refused(Reason.BAD_TYP, "a passport is not a visa")
        self._check_form(jws)
        iss = claims.get("iss")
        if type(iss) is not str or not iss:
            iss = _required_string(claims, "iss")
        try:
            return self._check_trusted_visa(token, jws, iss, now, audience, keys)
        except _Refused as exc:
            exc.iss = exc.iss or iss
            raise
        except (JoseError, KeyResolutionError) as exc:
            raise _Refused(exc.reason, exc.detail, iss) from None

    @staticmethod
    def _check_form(jws: Jws) -> None:
        """Document token (``jku``, no ``openid`` scope) or the deprecated access-token form (refused)."""
        scope = jws.payload.get("scope")
        openid = False
        if scope is not None:
            if type(scope) is not str:
                raise _Refused(Reason.BAD_CLAIM, "scope must be a space-separated string")
            openid = "openid" in scope.split(" ")
        if jws.jku is None:
            if openid:
                raise _Refused(
                    Reason.ACCESS_TOKEN_FORM,
                    "visa access token form (scope openid, no jku) is deprecated and not supported: "
                    "it is only valid with userinfo polling, which we do not do",
                )
            raise _Refused(Reason.JKU_MISSING, "visa document token has no jku header")
        if openid:
            raise _Refused(Reason.BAD_CLAIM, "a visa document token must not have openid in scope")

    def _check_trusted_visa(
        self,
        token: str,
        jws: Jws,
        iss: str,
        now: float,
        audience: str | None,
        keys: dict[tuple[str, str | None, str | None, str], Any],
    ) -> Visa:
        issuer = self.trust.visa_issuer(iss)
        if issuer is None:
            raise _Refused(Reason.UNTRUSTED_ISSUER, f"visa issuer {_show(iss)} is not trusted")
        memo = (iss, jws.jku, jws.kid, jws.alg)
        resolved = keys.get(memo)
        if resolved is None:
            resolved = self.resolver.visa_key(iss, jws.jku, jws.kid, jws.alg)
            keys[memo] = resolved
        verify_signature(jws, resolved.key)

        claims = jws.payload
        sub = claims.get("sub")
        if type(sub) is not str or not sub:
            sub = _required_string(claims, "sub")
        jti = claims.get("jti")
        if type(jti) is not str or not jti:
            jti = _required_string(claims, "jti")
        try:
            exp = self._check_times(claims, now)
            iat = claims["iat"]
            if "aud" in claims:
                self._check_audience(claims, audience, "visa")
            obj = self._visa_object(claims, now, issuer)
        except _Refused as exc:
            exc.jti = jti
            raise
        if self.revoked is not None and self.revoked(jti):
            raise _Refused(Reason.REVOKED, "visa jti is revoked", iss, jti, obj.type)
        intern = sys.intern
        return Visa(
            iss=intern(iss),
            sub=sub,
            iat=iat,
            exp=exp,
            visa=obj,
            raw=token,
            jti=jti,
            kid=intern(jws.kid) if jws.kid is not None else resolved.kid or None,
        )

    def _visa_object(self, claims: dict[str, Any], now: float, issuer: Any) -> VisaObject:
        limits = self.limits
        raw = claims.get(VISA_CLAIM, _MISSING)
        if raw is _MISSING:
            raise _Refused(Reason.MISSING_CLAIM, f"visa has no {VISA_CLAIM} claim")
        if type(raw) is not dict:
            raise _Refused(Reason.BAD_CLAIM, f"{VISA_CLAIM} must be an object")
        visa_type = raw.get("type", _MISSING)
        if visa_type is _MISSING:
            raise _Refused(Reason.MISSING_CLAIM, f"{VISA_CLAIM}.type is missing")
        if type(visa_type) is not str:
            raise _Refused(Reason.BAD_CLAIM, f"{VISA_CLAIM}.type must be a string")
        try:
            value = raw.get("value")
            if type(value) is not str or not value:
                value = _member_string(raw, "value")
            source = raw.get("source")
            if type(source) is not str or not source:
                source = _member_string(raw, "source")
            asserted = raw.get("asserted", _MISSING)
            if asserted is _MISSING:
                raise _Refused(Reason.MISSING_CLAIM, f"{VISA_CLAIM}.asserted is missing")
            if type(asserted) is not int or not 0 < asserted <= MAX_NUMERIC_DATE:
                raise _Refused(Reason.BAD_CLAIM, f"{VISA_CLAIM}.asserted must be a positive integer NumericDate")
            if asserted > now + limits.clock_leeway_seconds:
                raise _Refused(Reason.ISSUED_IN_FUTURE, f"{VISA_CLAIM}.asserted is in the future")
            standard = visa_type in STANDARD_TYPES
            if not standard:
                self._url_claim(visa_type, "type (a custom type must be a URL)")
            self._url_claim(source, "source")
            if visa_type in URL_VALUE_TYPES:
                self._url_claim(value, f"value (a {visa_type} value is a URL)")
            elif visa_type == AFFILIATION_AND_ROLE and "@" not in value:
                raise _Refused(Reason.BAD_CLAIM, f"{VISA_CLAIM}.value of {AFFILIATION_AND_ROLE} has no '@'")
            by = raw.get("by")
            if by is None:
                if "by" in raw:
                    raise _Refused(Reason.BAD_CLAIM, f"{VISA_CLAIM}.by must be a string")
                if visa_type in BY_REQUIRED_TYPES:
                    raise _Refused(Reason.BY_REQUIRED, f"{VISA_CLAIM}.by is required for {visa_type}")
            elif type(by) is not str or by not in BY_VALUES:
                raise _Refused(Reason.BAD_CLAIM, f"{VISA_CLAIM}.by {_show(by)} is not one of {sorted(BY_VALUES)}")
            conditions = None
            if "conditions" in raw:
                try:
                    conditions = conditions_from_claim(raw["conditions"]) or None
                except ValueError as exc:
                    raise _Refused(Reason.BAD_CLAIM, f"{VISA_CLAIM}.conditions: {exc}") from None
            accepted_types = issuer.visa_types
            if not standard and (accepted_types is None or visa_type not in accepted_types):
                raise _Refused(Reason.UNKNOWN_CUSTOM_TYPE, "custom visa type not configured for this issuer: ignored")
            if accepted_types is not None and visa_type not in accepted_types:
                raise _Refused(Reason.TYPE_NOT_ACCEPTED, f"issuer is not trusted for visa type {visa_type!r}")
            if issuer.sources is not None and source not in issuer.sources:
                raise _Refused(Reason.SOURCE_NOT_ACCEPTED, f"issuer is not trusted for source {_show(source)}")
        except _Refused as exc:
            exc.visa_type = visa_type
            raise
        intern = sys.intern
        return VisaObject(
            type=intern(visa_type),
            asserted=asserted,
            value=value,
            source=intern(source),
            by=intern(by) if by is not None else None,
            conditions=conditions,
        )

    def _url_claim(self, value: str, what: str) -> None:
        if len(value) > self.limits.max_url_claim_chars:
            raise _Refused(
                Reason.URL_TOO_LONG,
                f"{VISA_CLAIM}.{what}: {len(value)} characters, limit {self.limits.max_url_claim_chars}",
            )
        if value in _GOOD_URLS:
            return
        if URL_CLAIM.fullmatch(value) is None:
            raise _Refused(Reason.BAD_CLAIM, f"{VISA_CLAIM}.{what} is not an absolute http(s) URL")
        if len(_GOOD_URLS) >= GOOD_URL_MEMO_ENTRIES:
            _GOOD_URLS.clear()
        _GOOD_URLS.add(value)

    # ------------------------------------------------------------------ shared checks

    def _check_times(self, claims: dict[str, Any], now: float) -> int:
        """``iat`` and ``exp`` required integers; ``exp`` not passed, ``iat``/``nbf`` not ahead (with leeway)."""
        leeway = self.limits.clock_leeway_seconds
        exp = claims.get("exp")
        iat = claims.get("iat")
        if (
            type(exp) is not int
            or type(iat) is not int
            or not (0 <= exp <= MAX_NUMERIC_DATE and 0 <= iat <= MAX_NUMERIC_DATE)
        ):
            exp = _numeric_date(claims, "exp", required=True)
            iat = _numeric_date(claims, "iat", required=True)
        nbf = _numeric_date(claims, "nbf", required=False) if "nbf" in claims else None
        assert exp is not None and iat is not None
        if now >= exp + leeway:
            raise _Refused(Reason.EXPIRED, "token has expired")
        if iat > now + leeway:
            raise _Refused(Reason.ISSUED_IN_FUTURE, "token iat is in the future")
        if nbf is not None and nbf > now + leeway:
            raise _Refused(Reason.NOT_YET_VALID, "token nbf is in the future")
        if exp <= iat:
            raise _Refused(Reason.BAD_CLAIM, "token exp is not after its iat")
        return exp

    @staticmethod
    def _check_audience(claims: dict[str, Any], audience: str | None, what: str) -> None:
        """``aud`` when present: a string or a non-empty array of strings that names ``audience``.

        Passports: checked against the audience we were given; with none given only its shape
        is checked. Visas (RFC 7519 section 4.1.3, GA4GH defines no visa ``aud``): a visa that
        names an audience is accepted only when verified for that audience.
        """
        aud = claims.get("aud", _MISSING)
        if aud is _MISSING:
            return
        if type(aud) is str:
            names = (aud,)
        elif type(aud) is list and aud and all(type(a) is str for a in aud):
            names = tuple(aud)
        else:
            raise _Refused(Reason.BAD_CLAIM, f"{what} aud must be a string or a non-empty array of strings")
        if audience is not None:
            if audience not in names:
                raise _Refused(Reason.BAD_AUDIENCE, f"{what} aud does not name {_show(audience)}")
        elif what == "visa":
            raise _Refused(Reason.BAD_AUDIENCE, "visa names an audience and none was given to check it against")


# ---------------------------------------------------------------------- helpers

_MISSING: Any = object()


def _required_string(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name, _MISSING)
    if value is _MISSING:
        raise _Refused(Reason.MISSING_CLAIM, f"claim {name!r} is missing")
    if type(value) is not str or not value:
        raise _Refused(Reason.BAD_CLAIM, f"claim {name!r} must be a non-empty string")
    return value


def _member_string(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name, _MISSING)
    if value is _MISSING:
        raise _Refused(Reason.MISSING_CLAIM, f"{VISA_CLAIM}.{name} is missing")
    if type(value) is not str or not value:
        raise _Refused(Reason.BAD_CLAIM, f"{VISA_CLAIM}.{name} must be a non-empty string")
    return value


def _numeric_date(claims: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = claims.get(name, _MISSING)
    if value is _MISSING:
        if required:
            raise _Refused(Reason.MISSING_CLAIM, f"claim {name!r} is missing")
        return None
    if type(value) is not int:  # bool, float, string: refused
        raise _Refused(Reason.BAD_CLAIM, f"claim {name!r} must be an integer NumericDate")
    if not 0 <= value <= MAX_NUMERIC_DATE:
        raise _Refused(Reason.BAD_CLAIM, f"claim {name!r} is out of range")
    return value


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _binding_of(broker: Any) -> IdentityBinding:
    """The identity binding the trust configuration gives a broker; the strict LINKED if it says none."""
    value = getattr(broker, "identity_binding", IdentityBinding.LINKED)
    try:
        return IdentityBinding(value)
    except ValueError:
        log.error("broker has an unknown identity binding; using %s", IdentityBinding.LINKED.value)
        return IdentityBinding.LINKED


def _apply_conditions(
    verdicts: list[Visa | Rejection], same_sub: str | None = None
) -> tuple[list[Visa | Rejection], dict[Visa, tuple[Visa, ...]]]:
    """Refuse each conditioned visa whose conditions the accepted unconditioned visas do not meet.

    Also returns, for each conditioned visa kept, the visas :func:`evaluate_conditions` used to
    meet its conditions (never empty for a kept one: non-empty conditions need a satisfier).
    """
    candidates = [v for v in verdicts if type(v) is Visa and not v.visa.conditions]
    graph = IdentityGraph.from_visas(v for v in candidates if v.visa.type == LINKED_IDENTITIES)
    out: list[Visa | Rejection] = []
    relies_on: dict[Visa, tuple[Visa, ...]] = {}
    for index, verdict in enumerate(verdicts):
        if type(verdict) is Visa and verdict.visa.conditions:
            met, used = evaluate_conditions(verdict, candidates, graph=graph, same_sub=same_sub)
            if met:
                relies_on[verdict] = used
            else:
                verdict = Rejection(
                    Reason.CONDITIONS_UNMET,
                    "conditions not met by the other accepted visas of this passport",
                    index,
                    verdict.iss,
                    verdict.jti,
                    verdict.visa.type,
                )
        out.append(verdict)
    return out, relies_on


def effective_exp(result: PassportResult, visa: Visa) -> int:
    """The latest time ``visa`` of ``result`` may count: the minimum ``exp`` over it and what it relies on.

    What it relies on is ``result.relies_on[visa]`` (the visas that met its conditions and the
    LinkedIdentities visas linking them; nothing for an unconditioned visa), SPEC-DIGEST C21.
    Links from the visa to the passport holder and ``asserted``-based limits are the policy
    layer's to add. ``KeyError`` for a conditioned visa ``result`` did not accept: asking about
    a visa the verifier refused is a bug, not a question with a safe default.
    """
    used = result.relies_on[visa] if visa.visa.conditions else ()
    return min([visa.exp, *(other.exp for other in used)])
