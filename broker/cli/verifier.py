"""The verifier of one-shot commands (``passport inspect|verify``, ``policy explain``).

Built the way a serving broker builds its own (:class:`broker.container.Container`): the trust
configuration of the settings, with our own issuer's keys from the key ring, read once, when
first needed. When the ring cannot be read, tokens we signed cannot be verified: said once on
stderr with where the keys were looked for, and they are then refused (never accepted);
third-party tokens are still judged. Reading never creates anything: the store is opened only
when the keys live in it, and a missing SQLite file is reported, not created.
"""

from __future__ import annotations

import sys
from typing import Any

from broker.core.verify import Verifier
from broker.errors import BrokerError
from broker.keys.ring import KeyRing
from broker.settings import DEFAULTS, Settings
from broker.store import open_kernel
from broker.store.kernel import Kernel
from broker.trust.config import TrustConfig
from broker.trust.jwks import KeyResolver
from broker.trust.keyset import ResolvedKey


def cli_verifier(settings: Settings) -> Verifier:
    """A verifier over the settings' trust and our own keys (see the module docstring)."""
    state: dict[str, dict[str, Any]] = {}

    def unavailable(why: str) -> dict[str, Any]:
        where = settings.source if settings.source != DEFAULTS else "no settings file (embedded defaults)"
        print(
            f"ga4gh-broker: warning: this broker's own keys are unavailable ({why}; settings: {where}); "
            "tokens it signed will be refused",
            file=sys.stderr,
        )
        return {}

    def read(kernel: Kernel | None) -> dict[str, Any]:
        ring = KeyRing.open(
            settings.keys,
            settings.keys_path,
            kernel,
            leeway_seconds=settings.limits.clock_leeway_seconds,
            auto_maintain_seconds=None,
        )
        return {kid: ResolvedKey(kid, alg, key) for kid, (alg, key) in ring.public_keys().items()}

    def load() -> dict[str, Any]:
        try:
            if settings.keys.storage != "store":
                if not settings.keys_path.is_dir():
                    return unavailable(f"no key folder at {settings.keys_path}")
                return read(None)
            if settings.store.backend == "sqlite" and not settings.sqlite_path.is_file():
                return unavailable(f"no SQLite store at {settings.sqlite_path}")
            kernel = open_kernel(settings.store, settings.sqlite_path)
            try:
                return read(kernel)
            finally:
                kernel.close()
        except (BrokerError, OSError) as exc:  # the command must still judge third-party tokens
            return unavailable(exc.__class__.__name__)

    def keys() -> dict[str, Any]:
        if "keys" not in state:
            state["keys"] = load()
        return state["keys"]

    trust = TrustConfig.from_settings(settings.trust, settings.issuer, own_keys=keys)
    return Verifier(trust, KeyResolver(trust, settings.trust.fetch), settings.limits)
