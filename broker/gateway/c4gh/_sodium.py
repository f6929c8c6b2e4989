"""Typed, quiet access to the libsodium primitives the ``crypt4gh`` package ships (``crypt4gh.sodium``).

Why not ``crypt4gh.header.decrypt``/``encrypt`` directly: those log the node's secret key, the
shared keys and every packet at DEBUG level and log an ERROR for every packet meant for another
recipient (normal in a multi-recipient file). A server that runs with DEBUG logging must not leak
its key, so the core calls the same libsodium functions the package uses, through these wrappers,
which log nothing.

Crypt4GH header packet encryption (method 0, X25519 + ChaCha20-Poly1305, spec section 3.2): the
writer and reader derive a shared key with libsodium's ``crypto_kx`` (writer = server side, reader
= client side); the packet carries ``writer public key (32) || nonce (12) || ciphertext || MAC (16)``.
"""

from __future__ import annotations

import hashlib
import hmac

from crypt4gh import sodium as _raw
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEY_BYTES = 32
NONCE_BYTES = 12
MAC_BYTES = 16
CIPHER_DIFF = NONCE_BYTES + MAC_BYTES  # what sealing adds to a plaintext


def derive_public(secret: bytes) -> bytes:
    """The X25519 public key of a 32-byte secret key."""
    return bytes(_raw.derive_pk(secret))


_P = 2**255 - 19
# The u-coordinates (mod p) of the X25519 points of small order, on the curve and its twist:
# multiplying them by any clamped scalar gives zero (the list libsodium's blocklist encodes).
_SMALL_ORDER_U = frozenset(
    {
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P - 1,
    }
)


def is_small_order(public: bytes) -> bool:
    """True for a 32-byte X25519 public key of small order (any encoding: top bit ignored, u taken mod p)."""
    u = int.from_bytes(public, "little") & ((1 << 255) - 1)
    return u % _P in _SMALL_ORDER_U


def _kx(function: str, own_public: bytes, own_secret: bytes, peer_public: bytes) -> bytes | None:
    # Small-order peers are refused here, before libsodium: crypt4gh.sodium's kx functions set a
    # Python error on that failure yet still return a value (a SystemError on CPython).
    if len(peer_public) != KEY_BYTES or is_small_order(peer_public):
        return None
    try:
        return bytes(getattr(_raw, function)(own_public, own_secret, peer_public))
    except (ValueError, AssertionError, SystemError):
        return None


def reader_shared_key(own_public: bytes, own_secret: bytes, writer_public: bytes) -> bytes | None:
    """The key a reader opens a packet with; None if the writer key is unusable (small order, wrong size)."""
    return _kx("kx_client", own_public, own_secret, writer_public)


def writer_shared_key(own_public: bytes, own_secret: bytes, reader_public: bytes) -> bytes | None:
    """The key a writer seals a packet with for ``reader_public``; None if that key is unusable."""
    return _kx("kx_server", own_public, own_secret, reader_public)


def seal(key: bytes, plaintext: bytes) -> bytes:
    """``nonce || ChaCha20-Poly1305(plaintext) || MAC`` with a fresh random nonce."""
    out = bytearray(len(plaintext) + CIPHER_DIFF)
    written = int(_raw.chacha20poly1305_encrypt(out, plaintext, key))
    return bytes(out[:written])


def seal_synthetic(key: bytes, plaintext: bytes, nonce_key: bytes) -> bytes:
    """``nonce || ChaCha20-Poly1305(plaintext) || MAC`` with the nonce derived from key and plaintext.

    The nonce is HMAC-SHA256(``nonce_key``, ``key || plaintext``) cut to 12 bytes (a synthetic IV): the
    same plaintext under the same key always seals to the same bytes, and a nonce repeats under one
    key only for the same plaintext, which reveals nothing but that equality. The gateway uses it
    so every worker re-encrypts a file's header to one researcher identically, which keeps byte
    ranges of the served stream consistent across requests.
    """
    nonce = hmac.new(nonce_key, key + plaintext, hashlib.sha256).digest()[:NONCE_BYTES]
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, None)


def open_sealed(key: bytes, sealed: bytes) -> bytes | None:
    """The plaintext of ``nonce || ciphertext || MAC``, or None if the MAC does not verify."""
    if len(sealed) <= CIPHER_DIFF:
        return None
    out = bytearray(len(sealed) - CIPHER_DIFF)
    try:
        written = int(_raw.chacha20poly1305_decrypt(out, sealed, key))
    except (ValueError, AssertionError):
        return None
    return bytes(out[:written])
