"""Key resolution: which public key verifies a visa or a broker's token, and the JWKS cache behind it.

:class:`KeyResolver` turns a token's (``iss``, ``jku``, ``kid``, ``alg``) into one key, or a
:class:`KeyResolutionError` with a machine-readable reason. The order of checks is the
security property (GA4GH AAI 1.2, Clearinghouses 5.3.2; THREAT-MODEL JWT-05/06/07), so it
is spelled out and each step is tested to make no network request:

1. ``iss`` not a trusted visa issuer -> UNTRUSTED_ISSUER.
2. ``jku`` present and not exactly (whole string) in that issuer's allow-list -> JKU_NOT_ALLOWED.
   An issuer configured with pinned keys only has no allow-list: its visas' ``jku`` (which the
   spec makes mandatory) is then never fetched, and only the pinned keys can verify them.
3. ``jku`` absent and no pinned keys -> JKU_MISSING.
4. header ``alg`` not ES256/RS256 -> BAD_ALG; ``kid`` not a string -> KEY_NOT_FOUND.
5. a pinned key by ``kid`` (without ``kid``: the one pinned key, only when exactly one is
   pinned, else KID_REQUIRED), type-checked against ``alg`` -> the key, or BAD_ALG.
6. our own issuer: never fetched (the key ring is the pinned set) -> KEY_NOT_FOUND.
7. otherwise the allow-listed ``jku`` is fetched (cached) and the key chosen there
   (without ``kid``: only from a set of exactly one key, else KID_REQUIRED, JWT-04).

The cache (one slot per URL; URLs come only from configuration, so it is bounded):

- fresh for ``cache_ttl_seconds`` after a successful fetch; a hit takes no lock.
- an unknown ``kid`` in a fresh set triggers at most one refetch per URL per
  ``unknown_kid_cooldown_seconds`` (JWT-18); between refetches it is KEY_NOT_FOUND at once.
- single-flight: concurrent misses on one URL share one fetch (FT-13). Fetches run in their
  own thread and callers wait at most connect + read timeout + 1 s from the fetch's start, so
  a server that stalls (even while sending headers, which no socket timeout bounds) never
  holds a request longer than that; the stalled fetch is then abandoned and counts as failed.
- a failed fetch never wipes a good copy: it may serve for ``stale_if_error_seconds`` past its
  expiry (FT-12), then KEY_FETCH_FAILED. After a failure the URL is not tried again for
  ``unknown_kid_cooldown_seconds`` (no hammering of a server that is down).

``clock`` (injectable for tests) drives TTL, cooldown and staleness; the fetch deadlines use
the monotonic clock. Nothing here logs token contents: only configured URLs and reasons.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import requests

from broker.core.models import ALLOWED_ALGORITHMS, KeyResolutionError, Reason
from broker.trust.config import ResolvedKey, TrustConfig
from broker.trust.fetch import FetchError, fetch_jwks, new_session
from broker.trust.keyset import KeySet, key_misfit, select_key, show
from broker.trust.settings import JwksFetchSettings

__all__ = ["KeyResolutionError", "KeyResolver"]

log = logging.getLogger("broker.trust")

WAIT_MARGIN_SECONDS = 1.0
STAT_NAMES = (
    "fetches",
    "fetch_failures",
    "cache_hits",
    "refetches",
    "negative_hits",
    "stale_served",
    "waits_timed_out",
)


@dataclass(frozen=True)
class _Entry:
    """What we know about one URL: the last good key set and the last attempt."""

    keyset: KeySet | None
    fetched_at: float | None  # clock time of the last successful fetch
    attempted_at: float  # clock time of the last fetch attempt, good or bad
    error: str | None  # why the last attempt failed; None when it succeeded


@dataclass(frozen=True)
class _Flight:
    """A fetch under way: its result, when it started (clock) and until when it is awaited (monotonic)."""

    future: Future[None]
    started: float
    deadline: float


class _Slot:
    """One URL's cache entry, the lock that orders fetches, and the fetch in flight (if any)."""

    def __init__(self, url: str) -> None:
        self.where = f"jku {show(url)}"  # how errors name this source (worked out once)
        self.lock = threading.Lock()
        self.entry: _Entry | None = None
        self.flight: _Flight | None = None


class KeyResolver:
    """Resolves verification keys for visas and brokers' tokens under one :class:`TrustConfig`.

    ``session`` carries TLS trust (tests hand in one whose ``verify`` is their CA bundle); by
    default a session that ignores proxy and ``.netrc`` settings. Safe to share between
    threads. ``trust`` may be replaced (on a configuration reload); cached key sets are kept
    since they are keyed by URL and only allow-listed URLs reach them.
    """

    def __init__(
        self,
        trust: TrustConfig,
        fetch: JwksFetchSettings,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trust = trust
        self._settings = fetch
        self._session = session if session is not None else new_session()
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._slots_lock = threading.Lock()
        self._stats = dict.fromkeys(STAT_NAMES, 0)
        self._stats_lock = threading.Lock()
        self._wait_seconds = fetch.connect_timeout_seconds + fetch.read_timeout_seconds + WAIT_MARGIN_SECONDS

    # ------------------------------------------------------------------ public

    def visa_key(self, iss: str, jku: str | None, kid: str | None, alg: str) -> ResolvedKey:
        """The key that must verify a visa with this ``iss`` and header ``jku``/``kid``/``alg``."""
        issuer = self.trust.visa_issuer(iss)
        if issuer is None:
            raise KeyResolutionError(Reason.UNTRUSTED_ISSUER, f"visa issuer {show(iss)} is not trusted")
        if jku is not None:
            if not isinstance(jku, str) or (issuer.jku and jku not in issuer.jku):
                raise KeyResolutionError(Reason.JKU_NOT_ALLOWED, f"jku {show(jku)} is not allowed for {show(iss)}")
        elif len(issuer.pinned) == 0:
            raise KeyResolutionError(Reason.JKU_MISSING, f"visa of {show(iss)} has no jku and no key is pinned")
        _check_header(kid, alg)
        pinned = _pinned_key(issuer.pinned, kid, alg, f"issuer {show(iss)}")
        if pinned is not None:
            return pinned
        if issuer.own:
            raise KeyResolutionError(Reason.KEY_NOT_FOUND, f"kid {show(kid)} is not one of our keys")
        if jku is None or jku not in issuer.jku:
            raise KeyResolutionError(Reason.KEY_NOT_FOUND, f"kid {show(kid)} is not pinned for {show(iss)}")
        return self._from_url(jku, kid, alg)

    def broker_key(self, iss: str, kid: str | None, alg: str) -> ResolvedKey:
        """The key that must verify a passport or access token issued by the broker ``iss``."""
        broker = self.trust.broker(iss)
        if broker is None:
            raise KeyResolutionError(Reason.UNTRUSTED_ISSUER, f"broker {show(iss)} is not trusted")
        _check_header(kid, alg)
        pinned = _pinned_key(broker.pinned, kid, alg, f"broker {show(iss)}")
        if pinned is not None:
            return pinned
        if broker.own:
            raise KeyResolutionError(Reason.KEY_NOT_FOUND, f"kid {show(kid)} is not one of our keys")
        if broker.jwks_uri is None:
            raise KeyResolutionError(Reason.KEY_NOT_FOUND, f"kid {show(kid)} is not pinned for {show(iss)}")
        return self._from_url(broker.jwks_uri, kid, alg)

    def stats(self) -> dict[str, int]:
        """Counters for metrics and tests: fetches (HTTP requests started), fetch_failures,
        cache_hits, refetches (for an unknown kid), negative_hits (unknown kid inside the
        cooldown), stale_served, waits_timed_out."""
        with self._stats_lock:
            return dict(self._stats)

    def clear(self) -> None:
        """Forget every cached key set (an operator's flush, e.g. after a key compromise)."""
        with self._slots_lock:
            self._slots = {}

    # ------------------------------------------------------------------ the cache

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self._stats[name] += 1

    def _slot(self, url: str) -> _Slot:
        slot = self._slots.get(url)
        if slot is None:
            with self._slots_lock:
                slot = self._slots.setdefault(url, _Slot(url))
        return slot

    def _fresh(self, entry: _Entry | None, now: float) -> KeySet | None:
        if entry is None or entry.keyset is None or entry.fetched_at is None:
            return None
        return entry.keyset if now < entry.fetched_at + self._settings.cache_ttl_seconds else None

    def _stale(self, entry: _Entry | None, now: float) -> KeySet | None:
        if entry is None or entry.keyset is None or entry.fetched_at is None:
            return None
        limit = entry.fetched_at + self._settings.cache_ttl_seconds + self._settings.stale_if_error_seconds
        return entry.keyset if now < limit else None

    def _cooling(self, entry: _Entry | None, now: float) -> bool:
        return entry is not None and now - entry.attempted_at < self._settings.unknown_kid_cooldown_seconds

    def _from_url(self, url: str, kid: str | None, alg: str) -> ResolvedKey:
        slot = self._slot(url)
        where = slot.where
        entry = slot.entry
        fresh = self._fresh(entry, self._clock())
        if fresh is not None:  # fast path: no lock
            try:
                key = fresh.select(kid, alg, where)
            except KeyResolutionError as exc:
                if exc.reason is not Reason.KEY_NOT_FOUND:
                    raise
            else:
                self._count("cache_hits")
                return key
        with slot.lock:
            flight = slot.flight
            if flight is None:
                entry = slot.entry
                now = self._clock()
                fresh = self._fresh(entry, now)
                if fresh is not None:
                    try:
                        key = fresh.select(kid, alg, where)
                    except KeyResolutionError as exc:
                        if exc.reason is not Reason.KEY_NOT_FOUND or self._cooling(entry, now):
                            if exc.reason is Reason.KEY_NOT_FOUND:
                                self._count("negative_hits")
                            raise
                    else:
                        self._count("cache_hits")
                        return key
                    self._count("refetches")
                elif entry is not None and entry.error is not None and self._cooling(entry, now):
                    return self._from_stale(entry, now, kid, alg, where)  # failed recently: do not hammer
                flight = slot.flight = _Flight(Future(), now, time.monotonic() + self._wait_seconds)
                threading.Thread(
                    target=self._run_fetch, args=(slot, url, flight), name="jwks-fetch", daemon=True
                ).start()
        try:
            flight.future.result(timeout=max(0.0, flight.deadline - time.monotonic()))
        except FutureTimeout:
            self._count("waits_timed_out")
            with slot.lock:
                if slot.flight is flight:  # abandon it: a later fetch may start after the cooldown
                    slot.entry = _failed(slot.entry, flight.started, "no complete answer in time")
                    slot.flight = None
                    self._count("fetch_failures")
        entry = slot.entry
        now = self._clock()
        fresh = self._fresh(entry, now)
        if fresh is not None:
            return fresh.select(kid, alg, where)
        return self._from_stale(entry, now, kid, alg, where)

    def _from_stale(self, entry: _Entry | None, now: float, kid: str | None, alg: str, where: str) -> ResolvedKey:
        """After a failed (or unfinished) fetch: the last good copy while within bounds, else KEY_FETCH_FAILED."""
        why = entry.error if entry is not None and entry.error else "fetch did not finish in time"
        stale = self._stale(entry, now)
        if stale is None:
            raise KeyResolutionError(Reason.KEY_FETCH_FAILED, f"cannot fetch {where}: {why}")
        try:
            key = stale.select(kid, alg, where)
        except KeyResolutionError as exc:
            if exc.reason is not Reason.KEY_NOT_FOUND:
                raise
            # The key may well be in the set we cannot reach: say so, not "no such key".
            raise KeyResolutionError(
                Reason.KEY_FETCH_FAILED, f"cannot fetch {where} ({why}) and the last good copy lacks the key"
            ) from None
        self._count("stale_served")
        return key

    def _run_fetch(self, slot: _Slot, url: str, flight: _Flight) -> None:
        """One fetch, in its own thread; always records an outcome and releases the waiters.

        A fetch that was abandoned (its waiters timed out) records nothing when it ends.
        """
        started = flight.started
        self._count("fetches")
        keyset: KeySet | None = None
        error: str | None = None
        try:
            keyset = fetch_jwks(url, self._settings, self._session).keyset
            if keyset.ignored:
                log.warning("JWKS %s: %d key(s) ignored: %s", url, len(keyset.ignored), "; ".join(keyset.ignored[:5]))
        except FetchError as exc:
            error = str(exc)
            log.warning("JWKS fetch failed for %s: %s", url, exc)
        except Exception as exc:  # a bug here must still fail closed and free the waiters, not hang them
            error = f"internal error ({exc.__class__.__name__})"
            log.exception("JWKS fetch crashed for %s", url)
        with slot.lock:
            if slot.flight is flight:
                if error is None:
                    slot.entry = _Entry(keyset=keyset, fetched_at=started, attempted_at=started, error=None)
                else:
                    slot.entry = _failed(slot.entry, started, error)
                    self._count("fetch_failures")
                slot.flight = None
        flight.future.set_result(None)


def _failed(old: _Entry | None, started: float, why: str) -> _Entry:
    """The entry after a failed attempt: the last good copy is kept, never wiped (FT-12)."""
    return _Entry(
        keyset=old.keyset if old is not None else None,
        fetched_at=old.fetched_at if old is not None else None,
        attempted_at=started,
        error=why,
    )


def _check_header(kid: object, alg: object) -> None:
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise KeyResolutionError(
            Reason.BAD_ALG, f"algorithm {show(alg)} is not accepted (only {', '.join(sorted(ALLOWED_ALGORITHMS))})"
        )
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise KeyResolutionError(Reason.KEY_NOT_FOUND, f"kid {show(kid)} is not a non-empty string")


def _pinned_key(pinned: Mapping[str, ResolvedKey], kid: str | None, alg: str, where: str) -> ResolvedKey | None:
    """The pinned key for (kid, alg), None when none is pinned under that kid; BAD_ALG when it does not fit."""
    if kid is None:
        keys = list(pinned.values())
        return select_key(keys, None, alg, where) if keys else None
    key = pinned.get(kid)
    if key is None:
        return None
    misfit = key_misfit(key, alg)
    if misfit is not None:
        raise KeyResolutionError(Reason.BAD_ALG, misfit)
    return key
