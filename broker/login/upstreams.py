"""Per-process state of the ``oidc`` connectors: discovered metadata and upstream keys.

One :class:`Upstreams` belongs to the login area of a process (built with it, so nothing
happens at import time and each gunicorn worker keeps its own caches):

- discovery documents, judged by :mod:`broker.login.discovery`, are kept for
  ``trust.fetch.cache_ttl_seconds``; a failure is remembered for
  :data:`DISCOVERY_RETRY_SECONDS` so a dead upstream is not asked again on every click
  (FT-10: no pile-up of workers waiting on it);
- the upstream's ID-token keys are resolved by a :class:`broker.trust.jwks.KeyResolver` of
  its own, built over a one-entry trust configuration naming the upstream as a token issuer
  with its discovered ``jwks_uri``: the same hardened fetcher, cache, single-flight and
  unknown-``kid`` cooldown (``trust.fetch``) as every other key we fetch.
"""

from __future__ import annotations

import threading
import time
from types import MappingProxyType

from broker.login.discovery import DiscoveryError, UpstreamMetadata, discover, limits_of
from broker.login.settings import ConnectorSettings
from broker.login.upstream_http import HttpLimits
from broker.trust.config import TrustConfig, TrustedBroker
from broker.trust.jwks import KeyResolver
from broker.trust.settings import JwksFetchSettings

DISCOVERY_RETRY_SECONDS = 5.0


class Upstreams:
    """Caches for the oidc connectors of one process (see the module docstring). Thread-safe.

    ``own_issuer`` is ours (an upstream may not be this broker); ``fetch`` the key-fetch
    settings (``trust.fetch``); ``max_json_depth`` bounds every upstream answer.
    """

    def __init__(self, *, own_issuer: str, fetch: JwksFetchSettings, max_json_depth: int) -> None:
        self._own_issuer = own_issuer
        self._fetch = fetch
        self._max_json_depth = max_json_depth
        self._lock = threading.Lock()
        self._metadata: dict[str, tuple[UpstreamMetadata | DiscoveryError, float]] = {}
        self._resolvers: dict[tuple[str, str], KeyResolver] = {}

    def limits(self, connector: ConnectorSettings) -> HttpLimits:
        """The bounds of every exchange with this connector's upstream."""
        return limits_of(connector, self._fetch.allow_http_loopback, self._max_json_depth)

    def metadata(self, connector: ConnectorSettings) -> UpstreamMetadata:
        """The connector's judged discovery document; :class:`DiscoveryError` if the upstream is unusable."""
        now = time.monotonic()
        cached = self._metadata.get(connector.id)
        if cached is None or cached[1] <= now:
            try:
                result: UpstreamMetadata | DiscoveryError = discover(
                    connector, self._own_issuer, self.limits(connector)
                )
                keep = float(self._fetch.cache_ttl_seconds)
            except DiscoveryError as exc:
                result, keep = exc, DISCOVERY_RETRY_SECONDS
            cached = (result, time.monotonic() + keep)
            with self._lock:
                self._metadata[connector.id] = cached
        found = cached[0]
        if isinstance(found, DiscoveryError):
            raise DiscoveryError(found.reason, found.detail)  # a fresh one: no traceback piles up on the cached one
        return found

    def keys(self, metadata: UpstreamMetadata) -> KeyResolver:
        """The resolver of the upstream's ID-token keys (one per issuer and ``jwks_uri``)."""
        slot = (metadata.issuer, metadata.jwks_uri)
        resolver = self._resolvers.get(slot)
        if resolver is None:
            trust = TrustConfig(
                self._own_issuer,
                brokers={
                    metadata.issuer: TrustedBroker(
                        iss=metadata.issuer, jwks_uri=metadata.jwks_uri, pinned=MappingProxyType({})
                    ),
                },
            )
            with self._lock:
                resolver = self._resolvers.setdefault(slot, KeyResolver(trust, self._fetch))
        return resolver
