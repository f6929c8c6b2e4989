"""Opening a key ring from whole settings, as the composition root does, for tests."""

from __future__ import annotations

from typing import Any

from broker.keys.ring import KeyRing


def open_ring(settings: Any, store: Any, **kwargs: Any) -> KeyRing:
    """The ring of ``settings.keys`` over ``store`` (a kernel, a store exposing ``.kernel``, or None)."""
    kernel = getattr(store, "kernel", store)
    return KeyRing.open(
        settings.keys, settings.keys_path, kernel, leeway_seconds=settings.limits.clock_leeway_seconds, **kwargs
    )
