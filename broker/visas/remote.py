"""Remote visa sources: a user's visas fetched from other issuers and relayed unchanged.

A source answers ``GET <url with {user}>`` with ``{"ga4gh_passport_v1": [visa JWS, ...]}``
(the REMS and ELIXIR permissions API shape). For each source, in parallel:

- the user's identifier the source knows (our identity id, the ``sub`` of their linked
  identity at one upstream issuer, or their e-mail) is percent-encoded into ``{user}``, so it
  cannot change the path or host; no identifier -> reported, not fetched;
- one GET under hard bounds: https only (http only to loopback when allowed, as for JWKS),
  no redirects, the source's ``timeout_seconds`` from connect to last byte (a source that
  drips or stalls is abandoned at its deadline; the caller never waits longer than the slowest
  source's timeout), at most ``max_response_bytes``, ``Accept-Encoding: identity``, JSON
  content type, strict JSON (duplicate names, NaN refused), no proxy or ``.netrc`` from the
  environment, the configured auth header and nothing else of ours;
- every visa verified with the trust configuration (:meth:`Verifier.verify_visas`): signature,
  exact ``jku`` allow-list (an untrusted ``jku`` is never fetched), issuer, types and sources;
  accepted visas are relayed as the original JWS strings; each rejection is reported with its
  reason and index;
- a good answer is cached per (source, user) for ``cache_ttl_seconds`` (the raw list, verified
  again on each use, so an expired or revoked visa drops out at once). Failures are not cached.

A source that is down, slow or wrong costs at most its timeout and becomes a
:class:`SourceProblem`; it is never fatal to the passport being built.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import requests

from broker.core.jose import JoseError, loads_strict
from broker.core.models import PASSPORT_CLAIM, PassportResult
from broker.identity.records import Identity, IdentityLink
from broker.net import http as net
from broker.visas.settings import USER_PLACEHOLDER, VisaSourceSettings, check_visa_sources

if TYPE_CHECKING:
    from broker.settings import Settings

USER_AGENT = "ga4gh-broker-visa-sources"
JSON_TYPES = frozenset({"application/json"})
MAX_CACHE_ENTRIES = 10_000
MAX_JSON_DEPTH = 8


class VisaListVerifier(Protocol):
    """What remote sources need from :class:`broker.core.verify.Verifier`."""

    def verify_visas(self, tokens: Sequence[str], *, audience: str | None = None) -> PassportResult: ...


@dataclass(frozen=True)
class SourceProblem:
    """Why a source, or one visa from it, gave nothing: machine-readable ``reason`` plus detail."""

    source: str
    reason: str  # no_identity, timeout, unreachable, http_status, redirect, bad_response, too_large, visa_rejected,
    # too_many_visas
    detail: str
    index: int | None = None  # the visa's position in the source's list, for visa_rejected

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "reason": self.reason, "detail": self.detail}
        if self.index is not None:
            out["index"] = self.index
        return out


@dataclass(frozen=True)
class RemoteResult:
    """Relayed visas (original JWS strings) and every problem met on the way."""

    visas: list[str]
    problems: list[SourceProblem]


class _Failed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def user_identifier(source: VisaSourceSettings, identity: Identity, links: Sequence[IdentityLink]) -> str | None:
    """The identifier ``source`` knows the user by, or None when the user has none for it."""
    if source.send == "identity":
        return identity.id or None
    if source.send == "email":
        return identity.email or None
    for link in links:
        if link.iss == source.upstream_issuer:  # exact string, no normalisation (DESIGN rule 3)
            return link.sub or None
    return None


def source_url(source: VisaSourceSettings, user: str) -> str:
    """The URL template with ``user`` percent-encoded (every reserved character, ``/`` included)."""
    return source.url.replace(USER_PLACEHOLDER, quote(user, safe=""))


class RemoteVisaSources:
    """Fetches, caches and verifies visas from the configured remote sources. Thread-safe."""

    def __init__(
        self,
        sources: Sequence[VisaSourceSettings],
        verifier: VisaListVerifier,
        *,
        allow_http_loopback: bool = False,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_cache_entries: int = MAX_CACHE_ENTRIES,
    ) -> None:
        self.sources = list(sources)
        self.verifier = verifier
        self.allow_http_loopback = allow_http_loopback
        self._client = net.HttpClient(session if session is not None else net.new_session(), USER_AGENT)
        self._clock = clock
        self._max_entries = max_cache_entries
        self._cache: OrderedDict[tuple[str, str], tuple[float, list[str]]] = OrderedDict()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._stats = {"fetches": 0, "cache_hits": 0, "failures": 0}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=max(2, 2 * len(self.sources)), thread_name_prefix="visa-source"
                )
            return self._pool

    def fetch(self, identity: Identity, links: Sequence[IdentityLink] = ()) -> RemoteResult:
        """Every source's verified visas for this user, and every problem, within the slowest timeout."""
        problems: list[SourceProblem] = []
        started = time.monotonic()
        waiting: list[tuple[VisaSourceSettings, Future[list[str]] | list[str]]] = []
        for source in self.sources:
            user = user_identifier(source, identity, links)
            if user is None:
                problems.append(
                    SourceProblem(
                        source.name, "no_identity", f"the user has no identifier this source knows ({source.send})"
                    )
                )
                continue
            cached = self._cached(source, user)
            if cached is not None:
                waiting.append((source, cached))
                continue
            waiting.append((source, self._executor().submit(self._fetch_and_cache, source, user)))
        visas: list[str] = []
        for source, pending in waiting:
            tokens: list[str]
            if isinstance(pending, list):
                tokens = pending
            else:
                remaining = max(0.0, started + source.timeout_seconds - time.monotonic())
                try:
                    tokens = pending.result(timeout=remaining)
                except FutureTimeout:
                    pending.cancel()
                    self._count("failures")
                    problems.append(
                        SourceProblem(source.name, "timeout", f"no answer within {source.timeout_seconds:g} s")
                    )
                    continue
                except _Failed as exc:
                    self._count("failures")
                    problems.append(SourceProblem(source.name, exc.reason, exc.detail))
                    continue
            visas.extend(self._verified(source, tokens, problems))
        return RemoteResult(visas=visas, problems=problems)

    # ------------------------------------------------------------------ verification

    def _verified(self, source: VisaSourceSettings, tokens: list[str], problems: list[SourceProblem]) -> list[str]:
        if not tokens:
            return []
        result = self.verifier.verify_visas(tokens)
        if result.error is not None:
            problems.append(SourceProblem(source.name, str(result.error.reason), result.error.detail))
            return []
        for rejection in result.rejected:
            problems.append(
                SourceProblem(source.name, "visa_rejected", f"{rejection.reason}: {rejection.detail}", rejection.index)
            )
        return [visa.raw for visa in result.accepted]

    # ------------------------------------------------------------------ cache

    def _cached(self, source: VisaSourceSettings, user: str) -> list[str] | None:
        key = (source.name, user)
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            self._stats["cache_hits"] += 1
            return list(entry[1])

    def _fetch_and_cache(self, source: VisaSourceSettings, user: str) -> list[str]:
        tokens = self._get(source, user)
        if source.cache_ttl_seconds > 0:
            with self._lock:
                self._cache[(source.name, user)] = (self._clock() + source.cache_ttl_seconds, tokens)
                self._cache.move_to_end((source.name, user))
                while len(self._cache) > self._max_entries:
                    self._cache.popitem(last=False)
        return tokens

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    # ------------------------------------------------------------------ HTTP

    def _get(self, source: VisaSourceSettings, user: str) -> list[str]:
        """One bounded GET (:mod:`broker.net.http`) and the visa list of its answer; :class:`_Failed` on any problem."""
        url = source_url(source, user)
        headers = {}
        if source.auth_header:
            headers[source.auth_header_name] = source.auth_header.get_secret_value()
        limits = net.Limits.simple(source.timeout_seconds, source.max_response_bytes, self.allow_http_loopback)
        self._count("fetches")
        try:
            reply = self._client.request("GET", url, limits, headers=headers)
        except net.NetError as exc:
            raise _Failed(_REASONS.get(exc.reason, exc.reason), _detail(exc, source)) from None
        if 300 <= reply.status < 400:
            raise _Failed("redirect", f"HTTP {reply.status} redirect: not followed")
        if reply.status != 200:
            raise _Failed("http_status", f"HTTP {reply.status}")
        if reply.media_type not in JSON_TYPES:
            raise _Failed("bad_response", f"Content-Type {reply.media_type[:60] or 'none'!r} is not application/json")
        try:
            document = loads_strict(reply.body, MAX_JSON_DEPTH, "permissions response")
        except JoseError as exc:
            raise _Failed("bad_response", exc.detail) from None
        if not isinstance(document, dict) or PASSPORT_CLAIM not in document:
            raise _Failed("bad_response", f"expected an object with {PASSPORT_CLAIM}")
        tokens = document[PASSPORT_CLAIM]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise _Failed("bad_response", f"{PASSPORT_CLAIM} must be an array of strings")
        return tokens


#: The bounded client's failure reasons, as this module reports them.
_REASONS = {
    "tls": "unreachable",
    "connection": "unreachable",
    "compressed": "bad_response",
    "bad_length": "bad_response",
}


def _detail(exc: net.NetError, source: VisaSourceSettings) -> str:
    if exc.reason == "timeout":
        return f"no answer within {source.timeout_seconds:g} s"
    return exc.detail


def sources_from_settings(
    settings: Settings, verifier: VisaListVerifier, session: requests.Session | None = None
) -> RemoteVisaSources:
    """The remote sources of ``settings.visa_sources``, checked (:class:`SettingsProblem` on a mistake)."""
    configured = list(settings.visa_sources)
    allow_http = settings.trust.fetch.allow_http_loopback
    check_visa_sources(configured, allow_http)
    return RemoteVisaSources(configured, verifier, allow_http_loopback=allow_http, session=session)
