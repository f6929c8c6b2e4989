"""The person's side of the device flow (RFC 8628 3.3): type the user code at ``/device``, then approve or deny.

The device side (``/device_authorization`` and polling ``/token``) is authlib's endpoint and
grant (:mod:`broker.oidc.endpoints`, :class:`broker.oidc.grants.DeviceGrant`). Here a logged-in
person enters the user code (CSRF-checked), sees what the client asks for, and answers; the
answer is written into the device record, which the polling tool then redeems once. The user
code pointer is taken when the answer is given, so one code is answered once.

User codes have 20^8 values; RFC 8628 5.1 still asks for rate limits: unknown codes typed
here count per account and per address, and past a limit the page is ``429`` with
``Retry-After``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.oidc.authorization import scope_lines
from broker.oidc.consent import now_ms
from broker.oidc.endpoints import normalize_user_code
from broker.oidc.rate_limit import USER_CODE_FAILURES, USER_CODE_FAILURES_PER_ADDRESS
from broker.oidc.records import DeviceAuthorization
from broker.oidc.visas import VisaSummary, summarize
from broker.web.rate_limit import Limit, RateLimited, limit_key
from broker.web.session import BrowserSession

if TYPE_CHECKING:
    from broker.oidc.provider import OpenIDProvider

USER_CODE_CHARS = 8


@dataclass(frozen=True)
class DevicePrompt:
    """The approval page for one user code."""

    client_name: str
    user_code: str
    user_name: str
    scopes: list[dict[str, str]]
    visas: list[VisaSummary] | None
    csrf_token: str


@dataclass(frozen=True)
class UnknownCode:
    """The code typed is unknown, expired or already answered (counted against the guesser)."""


@dataclass(frozen=True)
class Answered:
    """The decision is recorded; ``approved`` says which."""

    approved: bool


class DeviceVerification:
    """``/device`` for a logged-in person (see the module docstring)."""

    def __init__(self, op: OpenIDProvider) -> None:
        self.op = op

    def _limited(self, identity_id: str, address: str) -> RateLimited | None:
        try:
            self.op.limiter.check_all(self._keys(identity_id, address))
        except RateLimited as exc:
            return exc
        return None

    @staticmethod
    def _keys(identity_id: str, address: str) -> tuple[tuple[Limit, str], ...]:
        return ((USER_CODE_FAILURES, limit_key(identity_id)), (USER_CODE_FAILURES_PER_ADDRESS, address))

    def _pending(self, user_code: str) -> DeviceAuthorization | None:
        pointer = self.op.repository.user_codes.get(user_code) if len(user_code) == USER_CODE_CHARS else None
        record = self.op.repository.devices.get(pointer.device_hash) if pointer is not None else None
        return record if record is not None and record.status == "pending" else None

    def lookup(self, session: BrowserSession, typed: str, address: str) -> DevicePrompt | UnknownCode | RateLimited:
        """The person typed a user code: what the client asks for, or why not."""
        identity_id = session.identity_id
        assert identity_id is not None
        limited = self._limited(identity_id, address)
        if limited is not None:
            return limited
        user_code = normalize_user_code(typed)
        record = self._pending(user_code)
        if record is None:
            self.op.limiter.hit_all(self._keys(identity_id, address))
            return UnknownCode()
        client = self.op.clients.get(record.client_id)
        visas = summarize(self.op.visas_for(identity_id)) if "ga4gh_passport_v1" in record.scope else None
        return DevicePrompt(
            client_name=client.name if client else record.client_id,
            user_code=user_code,
            user_name=self.op.display_name(identity_id),
            scopes=scope_lines(record.scope),
            visas=visas,
            csrf_token=session.csrf_token(f"device:{user_code}"),
        )

    def answer(
        self, session: BrowserSession, typed: str, allow: bool, address: str
    ) -> Answered | UnknownCode | RateLimited:
        """Record the person's decision for a user code (the code is taken: answered once)."""
        identity_id = session.identity_id
        assert identity_id is not None
        limited = self._limited(identity_id, address)
        if limited is not None:
            return limited
        user_code = normalize_user_code(typed)
        pointer = self.op.repository.user_codes.take(user_code) if len(user_code) == USER_CODE_CHARS else None
        status = "approved" if allow else "denied"
        auth_time = session.auth_time or self.op.now()
        approved_ms = now_ms()

        def decide(current: DeviceAuthorization | None) -> DeviceAuthorization | None:
            if current is None or current.status != "pending":
                return current
            return dataclasses.replace(
                current,
                status=status,
                identity_id=identity_id,
                auth_time=auth_time,
                idp=session.connector,
                approved_ms=approved_ms,
            )

        decided = self.op.repository.devices.update(pointer.device_hash, decide) if pointer is not None else None
        if decided is None or decided.status != status or decided.identity_id != identity_id:
            self.op.limiter.hit_all(self._keys(identity_id, address))
            return UnknownCode()
        return Answered(approved=allow)
