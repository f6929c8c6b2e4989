"""The plaintext of a stored Crypt4GH file by random access, and a fresh Crypt4GH stream for a researcher.

For htsget on encrypted files. Region cuts of BGZF data must re-compress partial blocks (see
:mod:`broker.gateway.htsget.plan`), and bgzipped VCF lines span blocks, so the stored segments
cannot simply be sent with an edit list: a cut at a block start would hand the client the tail
of an earlier line. So the node reads the plaintext it needs (:class:`PlainReader`, decrypting
only the 64 KiB segments asked for, with the session keys of its own header packets), the
htsget planner assembles the exact answer, and :func:`encrypt_stream` encrypts that answer as a
new Crypt4GH file to the researcher's key: a new random session key, one header packet, segments
of 65536 bytes. The region's bytes are therefore re-encrypted, not only the header; the cost is
one ChaCha20-Poly1305 pass over the region, never over the whole file.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import broker.gateway.c4gh._sodium as _sodium
from broker.gateway.c4gh.errors import StoredHeaderError, StoredReadError
from broker.gateway.c4gh.keys import NodeKey, RecipientKey
from broker.gateway.c4gh.reencrypt import (
    CIPHER_SEGMENT_SIZE,
    PACKET_DATA_ENC,
    SEGMENT_SIZE,
    OpenedHeader,
    plaintext_size,
    seal_header,
)
from broker.gateway.c4gh.stored import RandomReader, StoredHeader, read_exact

CACHED_SEGMENTS = 8
_METHOD_0 = (0).to_bytes(4, "little")


def session_keys(opened: OpenedHeader) -> tuple[bytes, ...]:
    """The data encryption keys among the packets the node opened (checked by ``open_header``)."""
    return tuple(p[8:40] for p in opened.plaintexts if int.from_bytes(p[:4], "little") == PACKET_DATA_ENC)


class PlainReader:
    """A :class:`RandomReader` of the plaintext of a stored Crypt4GH file (no edit list)."""

    def __init__(self, reader: RandomReader, stored: StoredHeader, opened: OpenedHeader) -> None:
        if opened.edit_list is not None:
            raise StoredHeaderError(
                "c4gh_edit_list_present", "The stored file has an edit list; it is not read by region."
            )
        self._reader = reader
        self._offset = stored.body_offset
        self._body = stored.body_length
        self._size = plaintext_size(stored.body_length)
        self._keys = [ChaCha20Poly1305(key) for key in session_keys(opened)]
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    @property
    def size(self) -> int:
        return self._size

    def _segment(self, index: int) -> bytes:
        found = self._cache.get(index)
        if found is not None:
            self._cache.move_to_end(index)
            return found
        start = index * CIPHER_SEGMENT_SIZE
        sealed = read_exact(self._reader, self._offset + start, min(CIPHER_SEGMENT_SIZE, self._body - start))
        nonce, body = sealed[: _sodium.NONCE_BYTES], sealed[_sodium.NONCE_BYTES :]
        for key in self._keys:
            try:
                plain = key.decrypt(nonce, body, None)
            except InvalidTag:
                continue
            self._cache[index] = plain
            while len(self._cache) > CACHED_SEGMENTS:
                self._cache.popitem(last=False)
            return plain
        raise StoredReadError("c4gh_segment_unreadable", f"Segment {index} of the stored file does not decrypt.")

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be non-negative")
        end = min(offset + length, self._size)
        out = bytearray()
        while offset < end:
            index, skip = divmod(offset, SEGMENT_SIZE)
            piece = self._segment(index)[skip : skip + (end - offset)]
            if not piece:
                break
            out += piece
            offset += len(piece)
        return bytes(out)


def encrypted_length(plain_length: int) -> int:
    """Body length of a Crypt4GH stream of ``plain_length`` plaintext bytes."""
    full, rest = divmod(plain_length, SEGMENT_SIZE)
    return full * CIPHER_SEGMENT_SIZE + (rest + _sodium.CIPHER_DIFF if rest else 0)


def encrypt_stream(chunks: Iterable[bytes], writer: NodeKey, recipient: RecipientKey) -> tuple[bytes, Iterator[bytes]]:
    """A new Crypt4GH header for ``recipient`` and the generator of the encrypted segments of ``chunks``."""
    session = os.urandom(_sodium.KEY_BYTES)
    packet = PACKET_DATA_ENC.to_bytes(4, "little") + _METHOD_0 + session
    header = seal_header([packet], writer, recipient)
    cipher = ChaCha20Poly1305(session)

    def seal(segment: bytes) -> bytes:
        nonce = os.urandom(_sodium.NONCE_BYTES)
        return nonce + cipher.encrypt(nonce, segment, None)

    def body() -> Iterator[bytes]:
        buffer = bytearray()
        for chunk in chunks:
            buffer += chunk
            while len(buffer) >= SEGMENT_SIZE:
                yield seal(bytes(buffer[:SEGMENT_SIZE]))
                del buffer[:SEGMENT_SIZE]
        if buffer:
            yield seal(bytes(buffer))

    return header, body()
