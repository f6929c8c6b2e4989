"""The process-wide parts a request needs, built once by the app factory.

Views reach them with :func:`current_runtime`; nothing here is created at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from broker.config import Settings
from broker.store.base import Store

if TYPE_CHECKING:
    from broker.keys.ring import KeyRing


@dataclass
class Runtime:
    """Settings, store and key ring of this process."""

    settings: Settings
    store: Store
    keyring: KeyRing


def current_runtime() -> Runtime:
    """The Runtime of the Flask app handling this request."""
    return current_app.extensions["broker"]
