"""Re-encrypting a stored Crypt4GH header to a researcher's key, and slicing by plaintext range.

Only the header changes: the node opens the header packets meant for it (its private key, X25519 +
ChaCha20-Poly1305, method 0), drops every packet it cannot open (meant for other recipients: the
``--trim`` of ``crypt4gh reencrypt``), and seals the opened packets again for the researcher, with
the node as writer. The body is served unchanged from the stored object.

Opened packets are checked as strictly as the spec allows (section 3.2): a data encryption
parameters packet is exactly ``type 0 || method 0 || 32-byte session key``; an edit list packet is
``type 1 || count || count * 8-byte lengths`` and appears at most once; other packet types are
refused rather than passed on unread (as ``crypt4gh`` itself does).

Plaintext slicing (for htsget on encrypted files): the body is a run of segments of 65536 plaintext
bytes, each stored as ``nonce (12) || ciphertext || MAC (16)`` = 65564 bytes, the last one shorter.
A plaintext range ``a..b`` therefore needs the whole segments ``a // 65536 .. b // 65536`` (one
contiguous stored range) and an edit list ``[a mod 65536, b - a + 1]`` (skip, then keep) in the new
header, so a standard decryptor outputs exactly the slice.

The functions are pure in (header bytes, node key, recipient key) apart from the random nonces: a
caller may cache the new header per (stored object version, recipient fingerprint).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crypt4gh import header as _c4gh_header

import broker.gateway.c4gh._sodium as _sodium
from broker.gateway.c4gh.errors import PublicKeyError, ServedRangeError, StoredHeaderError
from broker.gateway.c4gh.keys import NodeKey, RecipientKey
from broker.gateway.c4gh.served import HeaderPart, Part, ServedLayout, StoredPart
from broker.gateway.c4gh.stored import (
    DEFAULT_LIMITS,
    HeaderLimits,
    ParsedHeader,
    RandomReader,
    StoredHeader,
    parse_header,
    read_header,
)

SEGMENT_SIZE = 65536
CIPHER_SEGMENT_SIZE = SEGMENT_SIZE + _sodium.CIPHER_DIFF  # 65564
METHOD_X25519_CHACHA20_POLY1305 = 0
PACKET_DATA_ENC = 0
PACKET_EDIT_LIST = 1
_DATA_ENC_BYTES = 4 + 4 + _sodium.KEY_BYTES
_METHOD_0 = METHOD_X25519_CHACHA20_POLY1305.to_bytes(4, "little")


@dataclass(frozen=True, slots=True)
class OpenedHeader:
    """The header packets the node could open, in stored order (they hold session keys: no repr)."""

    plaintexts: tuple[bytes, ...] = field(repr=False)
    edit_list: tuple[int, ...] | None
    session_keys: int
    dropped: int  # packets the node could not open (other recipients)


def open_header(header: ParsedHeader, node_key: NodeKey) -> OpenedHeader:
    """Open every packet meant for ``node_key`` and check what they say.

    Raises :class:`StoredHeaderError` with ``c4gh_not_for_this_node`` (no packet opens),
    ``c4gh_unsupported_packet`` (an opened packet of an unknown type or bulk cipher, a malformed
    or second edit list) or ``c4gh_no_session_key`` (only an edit list opened).
    """
    shared_by_writer: dict[bytes, bytes | None] = {}
    plaintexts: list[bytes] = []
    edit_list: tuple[int, ...] | None = None
    session_keys = 0
    for packet in header.packets:
        if packet[:4] != _METHOD_0 or len(packet) <= 4 + _sodium.KEY_BYTES + _sodium.CIPHER_DIFF:
            continue  # another header encryption method, or too short to be ours
        writer = packet[4 : 4 + _sodium.KEY_BYTES]
        if writer not in shared_by_writer:
            shared_by_writer[writer] = _sodium.reader_shared_key(node_key.public, node_key.secret, writer)
        shared = shared_by_writer[writer]
        if shared is None:
            continue
        plain = _sodium.open_sealed(shared, packet[4 + _sodium.KEY_BYTES :])
        if plain is None:
            continue
        if len(plain) < 4:
            raise StoredHeaderError("c4gh_unsupported_packet", "The stored file's header has a malformed packet.")
        kind = int.from_bytes(plain[:4], "little")
        if kind == PACKET_DATA_ENC:
            if len(plain) != _DATA_ENC_BYTES or plain[4:8] != _METHOD_0:
                raise StoredHeaderError(
                    "c4gh_unsupported_packet",
                    "The stored file's data encryption packet names a bulk cipher other than "
                    "ChaCha20-Poly1305 or is malformed.",
                )
            session_keys += 1
        elif kind == PACKET_EDIT_LIST:
            if edit_list is not None:
                raise StoredHeaderError("c4gh_unsupported_packet", "The stored file's header has two edit lists.")
            edit_list = _parse_edit_list(plain)
        else:
            raise StoredHeaderError(
                "c4gh_unsupported_packet", f"The stored file's header has a packet of unknown type {kind}."
            )
        plaintexts.append(plain)
    if not plaintexts:
        raise StoredHeaderError(
            "c4gh_not_for_this_node",
            f"The stored file is not encrypted for this node: none of its {len(header.packets)} header "
            f"packets opens with the node's key (fingerprint {node_key.fingerprint}).",
        )
    if session_keys == 0:
        raise StoredHeaderError("c4gh_no_session_key", "The stored file's header holds no data encryption key.")
    return OpenedHeader(
        plaintexts=tuple(plaintexts),
        edit_list=edit_list,
        session_keys=session_keys,
        dropped=len(header.packets) - len(plaintexts),
    )


def _parse_edit_list(plain: bytes) -> tuple[int, ...]:
    if len(plain) < 8:
        raise StoredHeaderError("c4gh_unsupported_packet", "The stored file's edit list packet is malformed.")
    count = int.from_bytes(plain[4:8], "little")
    if len(plain) != 8 + 8 * count:
        raise StoredHeaderError("c4gh_unsupported_packet", "The stored file's edit list packet is malformed.")
    return tuple(int.from_bytes(plain[i : i + 8], "little") for i in range(8, len(plain), 8))


def seal_header(
    plaintexts: tuple[bytes, ...] | list[bytes],
    writer: NodeKey,
    recipient: RecipientKey,
    *,
    nonce_key: bytes | None = None,
) -> bytes:
    """A serialized Crypt4GH header whose packets carry ``plaintexts``, readable by ``recipient`` only.

    With ``nonce_key`` the nonces are synthetic (:func:`_sodium.seal_synthetic`): the same header
    to the same recipient is the same bytes every time; without it they are random.
    """
    shared = _sodium.writer_shared_key(writer.public, writer.secret, recipient.public)
    if shared is None:
        raise PublicKeyError("invalid_public_key", "The public key cannot be used for X25519 key exchange.")
    if nonce_key is None:
        packets = [_METHOD_0 + writer.public + _sodium.seal(shared, plain) for plain in plaintexts]
    else:
        packets = [_METHOD_0 + writer.public + _sodium.seal_synthetic(shared, plain, nonce_key) for plain in plaintexts]
    return bytes(_c4gh_header.serialize(packets))


def reencrypt_header(
    header: bytes | ParsedHeader,
    node_key: NodeKey,
    recipient: RecipientKey,
    limits: HeaderLimits = DEFAULT_LIMITS,
    *,
    nonce_key: bytes | None = None,
) -> bytes:
    """The stored header re-encrypted to ``recipient``, other recipients' packets dropped.

    ``header`` is exactly the stored header (bytes after it are refused: pass
    :attr:`ParsedHeader.raw`). An edit list in the stored header is kept. Raises
    :class:`StoredHeaderError` as :func:`parse_header` and :func:`open_header`.
    """
    parsed = header if isinstance(header, ParsedHeader) else parse_header(header, limits)
    if not isinstance(header, ParsedHeader) and parsed.length != len(header):
        raise StoredHeaderError("c4gh_header_trailing_bytes", "The header given has bytes after its last packet.")
    return seal_header(open_header(parsed, node_key).plaintexts, node_key, recipient, nonce_key=nonce_key)


@dataclass(frozen=True, slots=True)
class Reencrypted:
    """A stored object prepared for a researcher: the new header and where the body lies."""

    header: bytes
    body_offset: int
    body_length: int

    @property
    def layout(self) -> ServedLayout:
        return ServedLayout(header_length=len(self.header), body_offset=self.body_offset, body_length=self.body_length)

    @property
    def served_size(self) -> int:
        return len(self.header) + self.body_length


def reencrypt_stored(
    reader: RandomReader,
    node_key: NodeKey,
    recipient: RecipientKey,
    limits: HeaderLimits = DEFAULT_LIMITS,
    *,
    nonce_key: bytes | None = None,
) -> Reencrypted:
    """Read the stored header through ``reader`` and re-encrypt it to ``recipient``."""
    stored = read_header(reader, limits)
    return Reencrypted(
        header=reencrypt_header(stored.header, node_key, recipient, limits, nonce_key=nonce_key),
        body_offset=stored.body_offset,
        body_length=stored.body_length,
    )


# --------------------------------------------------------------------------- plaintext ranges


def plaintext_size(body_length: int) -> int:
    """The plaintext size of an encrypted body of ``body_length`` bytes (without an edit list).

    Raises :class:`StoredHeaderError` ``c4gh_bad_body_length`` when the last segment is too short
    to hold even one byte (the object is damaged or truncated).
    """
    full, rest = divmod(body_length, CIPHER_SEGMENT_SIZE)
    if body_length < 0 or 0 < rest <= _sodium.CIPHER_DIFF:
        raise StoredHeaderError(
            "c4gh_bad_body_length", f"The stored file's encrypted body of {body_length} bytes is not whole segments."
        )
    return full * SEGMENT_SIZE + (rest - _sodium.CIPHER_DIFF if rest else 0)


@dataclass(frozen=True, slots=True)
class PlainSlice:
    """What to serve so that decrypting gives plaintext ``plain_start..plain_end`` (inclusive)."""

    header: bytes
    stored: StoredPart
    plain_start: int
    plain_end: int

    @property
    def served_size(self) -> int:
        return len(self.header) + self.stored.length

    @property
    def parts(self) -> list[Part]:
        """The whole served stream, for :func:`broker.gateway.c4gh.served.iter_parts`."""
        return [HeaderPart(0, len(self.header)), self.stored]


def plaintext_range_to_served(
    stored: StoredHeader,
    node_key: NodeKey,
    recipient: RecipientKey,
    plain_start: int,
    plain_end: int,
) -> PlainSlice:
    """A new header with an edit list, and the stored segments, for plaintext bytes ``plain_start..plain_end``.

    ``plain_end`` is inclusive (like HTTP ranges) and is clipped to the plaintext's last byte.
    Raises :class:`ServedRangeError` for a range that starts past the plaintext or is reversed,
    and :class:`StoredHeaderError` ``c4gh_edit_list_present`` when the stored file already has an
    edit list (slicing a sliced file is not supported), besides the errors of :func:`open_header`.
    """
    total = plaintext_size(stored.body_length)
    valid = all(isinstance(v, int) and not isinstance(v, bool) for v in (plain_start, plain_end))
    if not valid or plain_start < 0 or plain_end < plain_start or plain_start >= total:
        raise ServedRangeError(
            "range_not_satisfiable",
            f"The plaintext range {plain_start}-{plain_end} is outside the file's {total} plaintext bytes.",
        )
    end = min(plain_end, total - 1)
    opened = open_header(stored.header, node_key)
    if opened.edit_list is not None:
        raise StoredHeaderError(
            "c4gh_edit_list_present", "The stored file already has an edit list; plaintext ranges are not served."
        )
    first_segment, skip = divmod(plain_start, SEGMENT_SIZE)
    last_segment = end // SEGMENT_SIZE
    stored_first = first_segment * CIPHER_SEGMENT_SIZE
    stored_stop = min((last_segment + 1) * CIPHER_SEGMENT_SIZE, stored.body_length)
    edit_packet = bytes(_c4gh_header.make_packet_data_edit_list([skip, end - plain_start + 1]))
    header = seal_header([*opened.plaintexts, edit_packet], node_key, recipient)
    return PlainSlice(
        header=header,
        stored=StoredPart(stored.body_offset + stored_first, stored_stop - stored_first),
        plain_start=plain_start,
        plain_end=end,
    )
