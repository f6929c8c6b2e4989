"""The OP's records on the kernel, and the operations that must read and write several in one transaction.

Every read-modify-write here runs in one ``kernel.transact`` (DESIGN rule 9), so no two
processes can interleave inside it:

- :meth:`OidcRepository.redeem_code` takes a code and records the grant its redemption
  starts in the same transaction; a later redemption finds that record and revokes the
  grant (OA-15, OA-16), however close together the two arrive.
- :meth:`OidcRepository.start_grant` writes a grant only if consent was not withdrawn since
  the researcher authorized it, and :meth:`OidcRepository.withdraw_consent` writes the
  withdrawal and forgets the consent together: whichever commits first, a grant authorized
  before an acknowledged withdrawal never yields a usable token.
- :meth:`OidcRepository.put_refresh_token` keeps no token of a revoked family ("revoked at
  birth": a replayed code may revoke a grant before its first refresh token is written).
- :meth:`OidcRepository.use_refresh_token` marks a token used and returns its state from
  before, so a second use of one token, by anyone, is seen (RFC 9700 4.14.2).

The first release kept grants and consent withdrawals as tickets (``ticket:oidc_grant`` by
grant id, ``ticket:consent_withdrawn`` by SHA-256 of identity and client). They are still read
when no record of the new kind exists, so refresh tokens issued before an upgrade keep their
grant, and a withdrawal acknowledged before it is never forgotten.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from broker.oidc.records import (
    ASSERTIONS,
    CLIENTS,
    CODES,
    CONSENTS,
    DEVICE_CODES,
    DEVICE_POLLS,
    GRANTS,
    INTERACTIONS,
    PASSPORTS,
    REDEMPTIONS,
    REFRESH_TOKENS,
    REVOKED_FAMILY,
    REVOKED_JTI,
    USER_CODES,
    WITHDRAWALS,
    AssertionUse,
    AuthorizationCode,
    CodeRedemption,
    Consent,
    ConsentWithdrawal,
    OAuthGrant,
    RefreshToken,
    family_term,
)
from broker.store.kernel import MAX_NAME_CHARS, Kernel, Tx, Write, key_of
from broker.store.records import Records

LEGACY_GRANT_KIND = "ticket:oidc_grant"
LEGACY_WITHDRAWAL_KIND = "ticket:consent_withdrawn"


def _legacy_key(identity_id: str, client_id: str) -> str:
    return hashlib.sha256(f"{identity_id}\x00{client_id}".encode()).hexdigest()


def _legacy_at_ms(old: dict[str, Any]) -> int:
    """The time of a first-release withdrawal; one we cannot read withdraws everything (fail closed)."""
    at_ms = old.get("at_ms")
    return at_ms if isinstance(at_ms, int) and not isinstance(at_ms, bool) else 2**62


def _name(value: object) -> bool:
    """Whether ``value`` can be a key on the kernel (ids from tokens may be anything)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS


class OidcRepository:
    """Typed access to every OP record, plus the transactions of the module docstring.

    ``family_marker_seconds`` is the least time a revoked family stays marked: longer than
    any access token of the family can live, so they are all refused until they expire.
    """

    def __init__(self, kernel: Kernel, *, family_marker_seconds: int) -> None:
        self.kernel = kernel
        self.family_marker_seconds = family_marker_seconds
        self.clients = Records(kernel, CLIENTS)
        self.grants = Records(kernel, GRANTS)
        self.codes = Records(kernel, CODES)
        self.redemptions = Records(kernel, REDEMPTIONS)
        self.refresh_tokens = Records(kernel, REFRESH_TOKENS)
        self.consents = Records(kernel, CONSENTS)
        self.withdrawals = Records(kernel, WITHDRAWALS)
        self.devices = Records(kernel, DEVICE_CODES)
        self.user_codes = Records(kernel, USER_CODES)
        self.polls = Records(kernel, DEVICE_POLLS)
        self.interactions = Records(kernel, INTERACTIONS)
        self.assertions = Records(kernel, ASSERTIONS)
        self.passports = Records(kernel, PASSPORTS)

    # ------------------------------------------------------------------ codes

    def redeem_code(
        self, code_hash: str, grant_id: str, marker_until: int
    ) -> tuple[AuthorizationCode | None, CodeRedemption | None]:
        """Take the code and record that its redemption starts ``grant_id``, in one transaction.

        Returns ``(code, None)`` to the one redemption that took it, ``(None, earlier)`` to a
        later one (``earlier`` names the grant to revoke; None for a code never issued or
        expired). authlib's grant reads a code and deletes it after issuing tokens, so two
        redemptions could both read it. A bare ``kernel.take`` would be single use, but
        between the take and writing the marker a loser could find neither the code nor the
        marker (the first release needed a second "reused" marker and a re-read for that);
        taking the code and writing the marker in one transaction closes the gap.
        """

        def run(tx: Tx) -> tuple[AuthorizationCode | None, CodeRedemption | None]:
            codes = self.codes.in_tx(tx)
            code = codes.get(code_hash)
            if code is not None:
                codes.delete(code_hash)
                self.redemptions.in_tx(tx).put(CodeRedemption(code_hash, grant_id, marker_until))
                return code, None
            return None, self.redemptions.in_tx(tx).get(code_hash)

        return self.kernel.transact(run)

    # ------------------------------------------------------------------ grants and families

    def start_grant(self, grant: OAuthGrant) -> bool:
        """Write ``grant`` unless consent was withdrawn at or after it was authorized (then False)."""

        def run(tx: Tx) -> bool:
            withdrawn = self.withdrawals.in_tx(tx).get(key_of(grant.identity_id, grant.client_id))
            at_ms = withdrawn.at_ms if withdrawn is not None else None
            old = tx.get(LEGACY_WITHDRAWAL_KIND, _legacy_key(grant.identity_id, grant.client_id))
            if old is not None:
                at_ms = max(at_ms or 0, _legacy_at_ms(old))
            if at_ms is not None and grant.authorized_ms <= at_ms:
                return False
            self.grants.in_tx(tx).put(grant)
            return True

        return self.kernel.transact(run)

    def grant(self, grant_id: str) -> OAuthGrant | None:
        """The grant ``grant_id`` (or the first release's ticket of it), None if unknown or unreadable."""
        if not _name(grant_id):
            return None
        found = self.grants.get(grant_id)
        if found is not None:
            return found
        old = self.kernel.get(LEGACY_GRANT_KIND, grant_id)
        if old is None or old.get("grant_id") != grant_id:
            return None
        try:
            return OAuthGrant(
                grant_id=grant_id,
                identity_id=str(old["identity_id"]),
                client_id=str(old["client_id"]),
                scope=tuple(str(s) for s in old["scope"]),
                authorized_ms=int(old["authorized_ms"]),
                started_at=int(old["started_at"]),
                expires_at=int(old["expires_at"]),
                keep_until=int(old["expires_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def revoke_family(self, family_id: str, audit: dict[str, Any] | None = None, at: int | None = None) -> int:
        """Delete the family's refresh tokens and mark it revoked (with ``audit`` in the same commit).

        Returns the number of live tokens removed.
        """
        if not _name(family_id):
            return 0

        def run(tx: Tx) -> int:
            tokens = self.refresh_tokens.in_tx(tx)
            live = tokens.find(family_term(family_id))
            for token in live:
                tokens.delete(token.token_hash)
            marker = tx.get(REVOKED_FAMILY, family_id)
            latest = max([t.expires_at for t in live] + [int(marker["until"]) if marker else 0])
            until = max(latest, tx.now + self.family_marker_seconds)
            tx.put(REVOKED_FAMILY, family_id, {"until": until}, expires_at=until)
            if audit is not None:
                tx.audit(audit, at)
            return len(live)

        return self.kernel.transact(run)

    def family_revoked(self, family_id: str) -> bool:
        return _name(family_id) and self.kernel.get(REVOKED_FAMILY, family_id) is not None

    def put_refresh_token(self, token: RefreshToken) -> bool:
        """Keep ``token`` unless its family is revoked (then extend the mark to cover it; False).

        A retried refresh hands out the same successor again: a successor already used is
        left as it is (never made usable again), so reuse detection still sees it.
        """

        def run(tx: Tx) -> bool:
            marker = tx.get(REVOKED_FAMILY, token.family_id)
            if marker is not None:
                until = max(int(marker["until"]), token.expires_at)
                tx.put(REVOKED_FAMILY, token.family_id, {"until": until}, expires_at=until)
                return False
            tokens = self.refresh_tokens.in_tx(tx)
            existing = tokens.get(token.token_hash)
            if existing is not None and existing.used:
                return True
            tokens.put(token)
            return True

        return self.kernel.transact(run)

    def refresh_token(self, token_hash: str) -> RefreshToken | None:
        """A refresh token's record as it is (no side effect)."""
        return self.refresh_tokens.get(token_hash)

    def use_refresh_token(self, token_hash: str, now: int | None = None) -> RefreshToken | None:
        """Mark the token used (at ``now``, default the store's clock), atomically; its state from before the call."""

        def run(tx: Tx) -> RefreshToken | None:
            tokens = self.refresh_tokens.in_tx(tx)
            current = tokens.get(token_hash)
            if current is not None and not current.used:
                tokens.put(replace(current, used=True, used_at=int(tx.now if now is None else now)))
            return current

        return self.kernel.transact(run)

    # ------------------------------------------------------------------ access tokens

    def revoke_jti(self, jti: str, until: int) -> None:
        """Refuse the access token ``jti`` until ``until`` (its own exp)."""

        def later(current: dict[str, Any] | None) -> Write:
            end = max(until, int(current["until"])) if current else until
            return Write({"until": end}, expires_at=end)

        if _name(jti):
            self.kernel.update(REVOKED_JTI, jti, later)

    def jti_revoked(self, jti: str) -> bool:
        return _name(jti) and self.kernel.get(REVOKED_JTI, jti) is not None

    # ------------------------------------------------------------------ consents

    def consent(self, identity_id: str, client_id: str) -> Consent | None:
        return self.consents.get(key_of(identity_id, client_id)) if _name(identity_id) and _name(client_id) else None

    def consents_of(self, identity_id: str) -> list[Consent]:
        if not _name(identity_id):
            return []
        return sorted(self.consents.find(f"identity:{identity_id}"), key=lambda c: c.client_id)

    def withdraw_consent(self, withdrawal: ConsentWithdrawal, audit: dict[str, Any]) -> bool:
        """Record the withdrawal (never moving the line back) and forget the consent, with ``audit``.

        Returns whether a remembered consent was deleted.
        """
        key = key_of(withdrawal.identity_id, withdrawal.client_id)

        def run(tx: Tx) -> bool:
            withdrawals = self.withdrawals.in_tx(tx)
            previous = withdrawals.get(key)
            if previous is not None and previous.at_ms > withdrawal.at_ms:
                withdrawals.put(replace(withdrawal, at_ms=previous.at_ms))
            else:
                withdrawals.put(withdrawal)
            consents = self.consents.in_tx(tx)
            existed = consents.get(key) is not None
            consents.delete(key)
            tx.audit(audit, withdrawal.at_ms // 1000)
            return existed

        return self.kernel.transact(run)

    def withdrawn_at_ms(self, identity_id: str, client_id: str) -> int | None:
        """When consent of ``identity_id`` for ``client_id`` was last withdrawn (ms), if it was."""
        if not (_name(identity_id) and _name(client_id)):
            return None
        found = self.withdrawals.get(key_of(identity_id, client_id))
        if found is not None:
            return found.at_ms
        old = self.kernel.get(LEGACY_WITHDRAWAL_KIND, _legacy_key(identity_id, client_id))
        return _legacy_at_ms(old) if old is not None else None

    # ------------------------------------------------------------------ client assertions

    def first_use(self, use: AssertionUse) -> bool:
        """True the first time this client presents this assertion ``jti`` (until it expires)."""
        return self.assertions.add(use)
