"""The process-wide parts a request needs, built once by the app factory.

Views reach them with :func:`current_runtime`; nothing here is created at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app

from broker.settings import Settings
from broker.store.base import Grant, Store

if TYPE_CHECKING:
    from broker.core.cache import VerifiedCache
    from broker.core.policy.reload import PolicyStore
    from broker.core.verify import Verifier
    from broker.keys.ring import KeyRing


@dataclass
class Runtime:
    """Settings, store and key ring of this process, and who must hear of a revocation."""

    settings: Settings
    store: Store
    keyring: KeyRing
    # Called with each grant revoked in this process (caches evict what they hold for it).
    revocation_listeners: list[Callable[[Grant], None]] = field(default_factory=list)
    # Filled by create_app when not given: the process's one verifier and its cache, and the
    # function that gathers a researcher's current visas (minted, remote, upstream).
    verifier: Verifier | None = None
    verified_cache: VerifiedCache | None = None
    visas_for: Callable[[str], list[str]] | None = None
    policies: PolicyStore | None = None

    def passport_visas(self, identity_id: str) -> list[str]:
        """Every visa JWS a passport or userinfo for ``identity_id`` carries right now."""
        if self.visas_for is None:
            raise RuntimeError("visas_for is not wired (create_app sets it)")
        return self.visas_for(identity_id)

    def revoked(self, grant: Grant) -> None:
        """Tell every listener that ``grant`` was revoked."""
        for listener in self.revocation_listeners:
            listener(grant)


def current_runtime() -> Runtime:
    """The Runtime of the Flask app handling this request."""
    return current_app.extensions["broker"]
