"""Errors of the key ring: each says what is wrong and what to do about it."""

from __future__ import annotations

from broker.errors import BrokerError


class KeyRingError(BrokerError):
    """The key ring cannot do what was asked (base class)."""

    status = 500
    code = "key_ring_error"


class NoSigningKey(KeyRingError):
    """No key signs at this time: the ring is empty or holds only keys not yet active."""


class KeyStorageError(KeyRingError):
    """Stored keys are unreadable, unsafe (file permissions) or inconsistent (kid mismatch)."""


class KeyDecryptionError(KeyRingError):
    """A sealed private key does not open: wrong secret, or the record was altered."""
