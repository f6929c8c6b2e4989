"""Fixed-window rate limits counted on the store kernel, so every process behind one address counts together.

THREAT-MODEL OA-18 (secret and password guessing), OA-25 (token scanning at introspection)
and RFC 8628 5.1 (user-code guessing) ask for brute force to end in ``429`` with
``Retry-After``. Counts live on the kernel, never in process memory (DESIGN rule 8): with
gunicorn workers or several machines on Redis an attacker cannot spread guesses over processes.

Each event is one atomic ``kernel.incr`` of the counter for (limit, key, window), which
vanishes when the window ends. The event that reaches the limit also writes a marker record
(kind ``rate-limit-reached``) that lives as long as the window, so "is this key limited?" is
one read and costs no count. Keys are SHA-256 digests: the store holds no user name, client
id or address in the clear, and an attacker-chosen key has a bounded length.

A fixed window lets a burst that straddles two windows reach twice the count; the limits
are set with that in mind.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from flask import Request, Response

from broker.errors import BrokerError
from broker.store.kernel import Kernel, key_of
from broker.web.pages import error_page

COUNTER_KIND = "rate-limit"
REACHED_KIND = "rate-limit-reached"


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per key in each fixed window of ``window`` seconds."""

    name: str  # part of the store key; machine-readable
    count: int
    window: int

    def __post_init__(self) -> None:
        if self.count < 1 or self.window < 1:
            raise ValueError("a limit needs a count and a window of at least 1")


def limit_key(*parts: str) -> str:
    """One key from several parts (NUL-separated, so ``("a", "bc")`` and ``("ab", "c")`` differ)."""
    return "\x00".join(parts)


def client_address(request: Request) -> str:
    """The client address of ``request``: the HTTP peer, or, behind a proxy listed in
    ``server.trusted_proxies``, the address it forwarded (:mod:`broker.web.proxies`, PX-20).

    Keys pair it with something else where they can (an account, a client_id), so that one
    address never locks an account or client out for everyone.
    """
    return request.remote_addr or "unknown"


class RateLimited(BrokerError):
    """A limit is reached: 429 with ``Retry-After``; retry after ``retry_after`` seconds."""

    status = 429
    code = "too_many_requests"

    def __init__(self, limit: Limit, retry_after: int) -> None:
        super().__init__(f"Too many requests; retry after {retry_after} seconds.")
        self.limit = limit
        self.retry_after = retry_after

    def response_headers(self, realm: str) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after), **self.headers}

    def page(self) -> Response:
        """The answer of a browser page: 429 with Retry-After (JSON when the client asks for JSON)."""
        message = f"Too many attempts; try again in {self.retry_after} seconds."
        response = error_page("Too many attempts", message, 429, code=self.code)
        response.headers["Retry-After"] = str(self.retry_after)
        return response


class RateLimiter:
    """Counts events per (limit, key) on the kernel; see the module docstring."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    @staticmethod
    def _slot(limit: Limit, key: str, now: float) -> tuple[str, int, int]:
        """The store key of this window's count, the window's end, and seconds until then."""
        window = int(now) // limit.window
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        end = (window + 1) * limit.window
        return key_of(limit.name, digest, str(window)), end, max(1, end - int(now))

    def retry_after(self, limit: Limit, key: str, now: float | None = None) -> int | None:
        """Seconds until ``key`` may act again if the limit is reached in this window, else None."""
        slot, _, remaining = self._slot(limit, key, time.time() if now is None else now)
        return remaining if self._kernel.get(REACHED_KIND, slot) is not None else None

    def check(self, limit: Limit, key: str, now: float | None = None) -> None:
        """Raise :class:`RateLimited` if ``key`` has reached the limit in this window."""
        wait = self.retry_after(limit, key, now)
        if wait is not None:
            raise RateLimited(limit, wait)

    def hit(self, limit: Limit, key: str, now: float | None = None) -> int | None:
        """Record one event; its number in the window (1-based), or None if the limit was already full."""
        slot, end, _ = self._slot(limit, key, time.time() if now is None else now)
        number = self._kernel.incr(COUNTER_KIND, slot, expires_at=end)
        if number >= limit.count:
            self._kernel.put(REACHED_KIND, slot, {}, expires_at=end)
        return number if number <= limit.count else None

    def take(self, limit: Limit, key: str, now: float | None = None) -> None:
        """Count one event that is itself limited (every request counts); raise if the limit is full."""
        at = time.time() if now is None else now
        if self.hit(limit, key, at) is None:
            raise RateLimited(limit, self._slot(limit, key, at)[2])

    def check_all(self, pairs: Iterable[tuple[Limit, str]], now: float | None = None) -> None:
        """:meth:`check` each ``(limit, key)``; raises for the first one reached."""
        for limit, key in pairs:
            self.check(limit, key, now)

    def hit_all(self, pairs: Iterable[tuple[Limit, str]], now: float | None = None) -> None:
        """Record one event under each ``(limit, key)`` (e.g. per account and per address)."""
        for limit, key in pairs:
            self.hit(limit, key, now)
