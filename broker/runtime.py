"""The process-wide parts a request needs, built once by the app factory.

Views reach them with :func:`current_runtime`; nothing here is created at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app

from broker.config import Settings
from broker.store.base import Grant, Store

if TYPE_CHECKING:
    from broker.keys.ring import KeyRing


@dataclass
class Runtime:
    """Settings, store and key ring of this process, and who must hear of a revocation."""

    settings: Settings
    store: Store
    keyring: KeyRing
    # Called with each grant revoked in this process (caches evict what they hold for it).
    revocation_listeners: list[Callable[[Grant], None]] = field(default_factory=list)

    def revoked(self, grant: Grant) -> None:
        """Tell every listener that ``grant`` was revoked."""
        for listener in self.revocation_listeners:
            listener(grant)


def current_runtime() -> Runtime:
    """The Runtime of the Flask app handling this request."""
    return current_app.extensions["broker"]
