"""Building the one verifier a process uses: trust from settings, our own keys from the key ring.

Every part that verifies passports or visas (the gateway, token exchange relaying, remote visa
sources, the ``passport`` and ``policy`` commands) gets its Verifier from here, so trust is
assembled in exactly one way (DESIGN: one trust configuration, used by every part).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broker.settings import Settings

if TYPE_CHECKING:
    from broker.core.cache import VerifiedCache
    from broker.core.verify import Verifier
    from broker.keys.ring import KeyRing
    from broker.trust.keyset import ResolvedKey


def own_keys_of(keyring: KeyRing) -> Callable[[], dict[str, ResolvedKey]]:
    """Our published keys as ``kid -> ResolvedKey``, read live from the ring (it reloads at most once a second)."""
    from broker.trust.keyset import ResolvedKey

    def keys() -> dict[str, ResolvedKey]:
        return {kid: ResolvedKey(kid, alg, key) for kid, (alg, key) in keyring.public_keys().items()}

    return keys


def build_verifier(
    settings: Settings,
    own_keys: Callable[[], dict[str, Any]] | None,
    *,
    cache: VerifiedCache | None = None,
    revoked: Callable[[str], bool] | None = None,
) -> Verifier:
    """A Verifier over the settings' trust, with our own issuer's keys from ``own_keys``."""
    from broker.core.verify import Verifier
    from broker.trust.config import TrustConfig
    from broker.trust.jwks import KeyResolver

    trust = TrustConfig.from_settings(settings.trust, settings.issuer, own_keys=own_keys)
    return Verifier(trust, KeyResolver(trust, settings.trust.fetch), settings.limits, cache=cache, revoked=revoked)


def cli_verifier(settings: Settings) -> Verifier:
    """The verifier for one-shot commands: our keys read from the ring once, when first needed.

    When the ring cannot be read, tokens we signed cannot be verified: said once on stderr, and
    they are then refused (never accepted); third-party tokens are still judged.
    """
    state: dict[str, dict[str, Any]] = {}

    def keys() -> dict[str, Any]:
        if "keys" not in state:
            from broker.keys.ring import KeyRing
            from broker.store import open_store

            try:
                store = open_store(settings)
                try:
                    ring = KeyRing.open(
                        settings.keys,
                        settings.keys_path,
                        store.kernel,
                        leeway_seconds=settings.limits.clock_leeway_seconds,
                        auto_maintain_seconds=None,
                    )
                    state["keys"] = own_keys_of(ring)()
                finally:
                    store.close()
            except Exception as exc:  # the command must still judge third-party tokens
                print(
                    f"ga4gh-broker: warning: this broker's own keys are unavailable ({exc.__class__.__name__}); "
                    "tokens it signed will be refused",
                    file=sys.stderr,
                )
                state["keys"] = {}
        return state["keys"]

    return build_verifier(settings, keys)
