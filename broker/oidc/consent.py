"""Remembered consents, and withdrawing one, which ends every grant given to the client before (OA-20 case 5).

Withdrawal does not look for the client's grants one by one: it writes one record,
``(researcher, client) -> withdrawn at <ms>``, and forgets the remembered consent, in one
transaction (:meth:`~broker.oidc.repository.OidcRepository.withdraw_consent`). Everything that
honours a grant compares the record with the moment that grant was authorized (the grant's
``authorized_ms``, or a code's or device approval's own time):

- a grant authorized before the withdrawal cannot start (checked with its write, in one
  transaction, so a redemption racing the withdrawal either commits first, and is then
  ended by it, or sees it);
- the refresh grant refuses with ``invalid_grant`` and revokes the family;
- access tokens are refused wherever they are checked and introspect as ``{"active": false}``.

Grants authorized after the withdrawal (the researcher consents again) are not touched. The
record lives as long as any grant authorized before it can (absolute refresh lifetime, plus
the wait of a code or device code before redemption, plus one access-token lifetime).

Milliseconds, not seconds: a researcher who withdraws and consents again within the same
second must get a working grant. Clocks of different machines must agree to well under the
time a person takes to consent again; a grant authorized on a clock running behind is
treated as older, which fails closed.
"""

from __future__ import annotations

import time

from broker.oidc.records import Consent, ConsentWithdrawal
from broker.oidc.repository import OidcRepository
from broker.oidc.settings import OidcSettings

MARKER_MARGIN_SECONDS = 300  # clock leeway on top of the computed lifetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Consents:
    """A researcher's remembered consents per client, and their withdrawal."""

    def __init__(self, repository: OidcRepository, settings: OidcSettings) -> None:
        self._repository = repository
        self._settings = settings

    def get(self, identity_id: str, client_id: str) -> Consent | None:
        return self._repository.consent(identity_id, client_id)

    def of(self, identity_id: str) -> list[Consent]:
        """Every remembered consent of ``identity_id``, by client."""
        return self._repository.consents_of(identity_id)

    def remember(self, identity_id: str, client_id: str, scopes: tuple[str, ...], now: int) -> None:
        self._repository.consents.put(Consent(identity_id, client_id, scopes, now))

    def marker_lifetime(self) -> int:
        """How long a withdrawal record must outlive the withdrawal (see the module docstring)."""
        oidc = self._settings
        return (
            oidc.refresh_token_lifetime_seconds
            + max(oidc.code_lifetime_seconds, oidc.device_code_lifetime_seconds)
            + oidc.access_token_lifetime_seconds
            + MARKER_MARGIN_SECONDS
        )

    def withdraw(self, identity_id: str, client_id: str, at_ms: int | None = None) -> bool:
        """End every grant ``identity_id`` gave ``client_id`` until now, and forget the remembered consent.

        Returns whether a remembered consent was deleted; audited either way (in the same commit).
        """
        at = now_ms() if at_ms is None else at_ms
        withdrawal = ConsentWithdrawal(identity_id, client_id, at, keep_until=at // 1000 + self.marker_lifetime())
        audit = {"event": "oidc.consent_withdrawn", "identity_id": identity_id, "client_id": client_id}
        return self._repository.withdraw_consent(withdrawal, audit)

    def withdrawn_at_ms(self, identity_id: str, client_id: str) -> int | None:
        return self._repository.withdrawn_at_ms(identity_id, client_id)
