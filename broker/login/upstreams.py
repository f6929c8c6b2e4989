"""Per-process state of the ``oidc`` connectors: discovered metadata and upstream keys.

One :class:`Upstreams` lives in each Flask app (``app.extensions``), made on first use, so
nothing happens at import time and each gunicorn worker keeps its own caches:

- discovery documents, judged by :mod:`broker.login.discovery`, are kept for
  ``trust.fetch.cache_ttl_seconds``; a failure is remembered for
  :data:`DISCOVERY_RETRY_SECONDS` so a dead upstream is not asked again on every click
  (FT-10: no pile-up of workers waiting on it);
- the upstream's ID-token keys are resolved by a :class:`broker.trust.jwks.KeyResolver` of
  its own, built over a one-entry trust configuration naming the upstream as a token issuer
  with its discovered ``jwks_uri``: the same hardened fetcher, cache, single-flight and
  unknown-``kid`` cooldown (``trust.fetch``) as every other key we fetch.

Relayed visas are judged by the process's one verifier (``Runtime.verifier``), not here.
"""

from __future__ import annotations

import threading
import time
from types import MappingProxyType
from typing import TYPE_CHECKING

from flask import current_app

from broker.login.discovery import DiscoveryError, UpstreamMetadata, discover
from broker.login.settings import ConnectorSettings
from broker.trust.config import TrustConfig, TrustedBroker
from broker.trust.jwks import KeyResolver

if TYPE_CHECKING:
    from broker.settings import Settings

EXTENSION = "broker.login.upstreams"
DISCOVERY_RETRY_SECONDS = 5.0


class Upstreams:
    """Caches for the oidc connectors of one process (see the module docstring). Thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._metadata: dict[str, tuple[UpstreamMetadata | DiscoveryError, float]] = {}
        self._resolvers: dict[tuple[str, str], KeyResolver] = {}

    def metadata(self, connector: ConnectorSettings) -> UpstreamMetadata:
        """The connector's judged discovery document; :class:`DiscoveryError` if the upstream is unusable."""
        now = time.monotonic()
        cached = self._metadata.get(connector.id)
        if cached is None or cached[1] <= now:
            try:
                result: UpstreamMetadata | DiscoveryError = discover(connector, self._settings)
                keep = float(self._settings.trust.fetch.cache_ttl_seconds)
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
                self._settings.issuer,
                brokers={
                    metadata.issuer: TrustedBroker(
                        iss=metadata.issuer, jwks_uri=metadata.jwks_uri, pinned=MappingProxyType({})
                    ),
                },
            )
            with self._lock:
                resolver = self._resolvers.setdefault(slot, KeyResolver(trust, self._settings.trust.fetch))
        return resolver


def current_upstreams() -> Upstreams:
    """The :class:`Upstreams` of the app handling this request (made on first use)."""
    from broker.runtime import current_runtime

    found = current_app.extensions.get(EXTENSION)
    if found is None:
        found = current_app.extensions.setdefault(EXTENSION, Upstreams(current_runtime().settings))
    return found  # type: ignore[no-any-return]
