"""Fixed-window rate limits kept in the store, so every process behind one address counts together.

THREAT-MODEL OA-18 (client secret guessing), OA-25 (token scanning at introspection) and
RFC 8628 5.1 (user-code guessing) ask for brute force to end in ``429`` with ``Retry-After``.
The counts live in the store, never in process memory (DESIGN rule 8): with gunicorn
workers or several machines on Redis, an attacker cannot spread guesses over processes.

How a count is kept with only the store's ticket operations: the n-th event of a window
takes the ticket ``<key>:<window>:<n>`` with ``add_ticket``, which is atomic (SET NX on
Redis, one INSERT ... ON CONFLICT statement on SQLite). An event first looks for the lowest
free slot by a binary search of ``peek_ticket`` over ``0 .. count-1``, then adds from there
upward; it adds slot ``n`` only after seeing slot ``n-1`` taken, so the taken slots are
always a prefix, and "limit reached" is one look at the last slot. Every slot of a window
ends with the window. Keys are SHA-256 digests, so the store holds no user name, client id
or address in the clear, and an attacker-chosen key has a bounded length.

A fixed window lets a burst that straddles two windows reach twice the count; the limits
below are set with that in mind. Each has a default here (see the report for the settings
they would become).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from flask import Response, request

from broker.errors import BrokerError
from broker.oidc.errors import OAuthError
from broker.store.base import Store

TOO_MANY_REQUESTS = "too_many_requests"


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per key in each fixed window of ``window`` seconds."""

    name: str  # part of the ticket kind; machine-readable, appears in audit events
    count: int
    window: int

    def __post_init__(self) -> None:
        if self.count < 1 or self.window < 1:
            raise ValueError("a limit needs a count and a window of at least 1")


# Failed client authentications per (claimed client_id, client address): token, introspection,
# revocation and device authorization endpoints (OA-18).
CLIENT_AUTH_FAILURES = Limit("client_auth_failure", count=20, window=60)
# Introspection answers {"active": false} per authenticated client (OA-25 token scanning).
INTROSPECTION_MISSES = Limit("introspection_miss", count=120, window=60)
# Device authorization requests per (client_id, client address): each one adds a live user code.
DEVICE_AUTHORIZATIONS = Limit("device_authorization", count=30, window=60)
# Unknown user codes typed at /device, per logged-in account and per client address (RFC 8628 5.1).
USER_CODE_FAILURES = Limit("user_code_failure", count=10, window=300)
USER_CODE_FAILURES_PER_ADDRESS = Limit("user_code_failure_address", count=50, window=300)
# Failed password logins per (connector, user name, address) and per address (for broker/login).
LOGIN_FAILURES = Limit("login_failure", count=10, window=300)
LOGIN_FAILURES_PER_ADDRESS = Limit("login_failure_address", count=100, window=300)


def limit_key(*parts: str) -> str:
    """One key from several parts (NUL-separated, so ``("a", "bc")`` and ``("ab", "c")`` differ)."""
    return "\x00".join(parts)


def client_address() -> str:
    """The address of the HTTP peer of this request.

    Behind a reverse proxy this is the proxy unless the app trusts its ``X-Forwarded-For``
    (THREAT-MODEL PX-20); keys therefore always pair it with something else where they can.
    """
    return request.remote_addr or "unknown"


class RateLimited(BrokerError):
    """A limit is reached; retry after ``retry_after`` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, limit: Limit, retry_after: int) -> None:
        super().__init__(f"{limit.name}: retry after {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after

    def oauth_error(self) -> OAuthError:
        """The JSON answer of an OAuth endpoint: 429, ``too_many_requests``, Retry-After, no-store."""
        return OAuthError(
            TOO_MANY_REQUESTS,
            f"Too many requests; retry after {self.retry_after} seconds.",
            429,
            headers={"Retry-After": str(self.retry_after)},
        )

    def page(self) -> Response:
        """The HTML answer of a browser page: 429 with Retry-After."""
        from broker.web.pages import error_page

        response = error_page("Too many attempts", f"Too many attempts; try again in {self.retry_after} seconds.", 429)
        response.headers["Retry-After"] = str(self.retry_after)
        return response


class RateLimiter:
    """Counts events per (limit, key) in the store; see the module docstring for how."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def _slot(limit: Limit, key: str, now: float) -> tuple[str, str, int]:
        """The ticket kind, the key prefix of this window's slots, and seconds until the window ends."""
        window = int(now) // limit.window
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        remaining = (window + 1) * limit.window - int(now)
        return f"ratelimit:{limit.name}", f"{digest}:{window}", max(1, remaining)

    def retry_after(self, limit: Limit, key: str, now: float | None = None) -> int | None:
        """Seconds until ``key`` may act again if the limit is reached in this window, else None."""
        now = time.time() if now is None else now
        kind, prefix, remaining = self._slot(limit, key, now)
        if self._store.peek_ticket(kind, f"{prefix}:{limit.count - 1}") is None:
            return None
        return remaining

    def check(self, limit: Limit, key: str, now: float | None = None) -> None:
        """Raise :class:`RateLimited` if ``key`` has reached the limit in this window."""
        wait = self.retry_after(limit, key, now)
        if wait is not None:
            raise RateLimited(limit, wait)

    def hit(self, limit: Limit, key: str, now: float | None = None) -> int | None:
        """Record one event; its number in the window (1-based), or None if the limit was already full."""
        now = time.time() if now is None else now
        kind, prefix, remaining = self._slot(limit, key, now)
        low, high = 0, limit.count  # slots below `low` are taken; the first free one is < `high` or none
        while low < high:
            middle = (low + high) // 2
            if self._store.peek_ticket(kind, f"{prefix}:{middle}") is None:
                high = middle
            else:
                low = middle + 1
        for slot in range(low, limit.count):
            if self._store.add_ticket(kind, f"{prefix}:{slot}", {}, remaining):
                return slot + 1
        return None

    def take(self, limit: Limit, key: str, now: float | None = None) -> None:
        """Count one event that is itself limited (every request counts); raise if the limit is full."""
        now = time.time() if now is None else now
        if self.hit(limit, key, now) is None:
            raise RateLimited(limit, self._slot(limit, key, now)[2])

    def check_all(self, pairs: Iterable[tuple[Limit, str]], now: float | None = None) -> None:
        """:meth:`check` each ``(limit, key)``; raises for the first one reached."""
        for limit, key in pairs:
            self.check(limit, key, now)

    def hit_all(self, pairs: Iterable[tuple[Limit, str]], now: float | None = None) -> None:
        """Record one event under each ``(limit, key)`` (e.g. per account and per address)."""
        for limit, key in pairs:
            self.hit(limit, key, now)
