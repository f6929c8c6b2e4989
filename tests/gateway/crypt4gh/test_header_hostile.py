"""Hostile and damaged stored headers: every one a typed error, found with bounded reads."""

from __future__ import annotations

import io
import os
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.gateway.c4gh import (
    BytesReader,
    HeaderLimits,
    NodeKey,
    RecipientKey,
    StoredHeaderError,
    StoredReadError,
    open_header,
    parse_header,
    read_header,
    reencrypt_header,
    reencrypt_stored,
    seal_header,
)
from tests.gateway.crypt4gh.conftest import Crypt4GH, Keys


def _key() -> NodeKey:
    secret = os.urandom(32)
    return NodeKey(secret=secret, public=X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw())


NODE = _key()
WRITER = _key()
RESEARCHER = RecipientKey(_key().public)
SESSION_PACKET = struct.pack("<II", 0, 0) + os.urandom(32)


def _for_node(*plaintexts: bytes, node: NodeKey = NODE) -> bytes:
    """A header whose packets carry ``plaintexts`` for ``node``, written by an ephemeral writer."""
    return seal_header(list(plaintexts), WRITER, RecipientKey(node.public))


def _edit_list(*lengths: int) -> bytes:
    return struct.pack("<II", 1, len(lengths)) + b"".join(struct.pack("<Q", n) for n in lengths)


def _prefix(version: int = 1, count: int = 1, magic: bytes = b"crypt4gh") -> bytes:
    return magic + struct.pack("<II", version, count)


class CountingReader:
    """A reader that counts the bytes asked for, over ``data`` reported as ``size`` bytes long."""

    def __init__(self, data: bytes, size: int | None = None) -> None:
        self.data = data
        self.size = len(data) if size is None else size
        self.asked = 0

    def read(self, offset: int, length: int) -> bytes:
        self.asked += length
        return self.data[offset : offset + length]


def _code(data: bytes, limits: HeaderLimits | None = None) -> str:
    with pytest.raises(StoredHeaderError) as info:
        parse_header(data, limits or HeaderLimits())
    return info.value.code


def test_a_well_formed_synthetic_header_round_trips() -> None:
    header = _for_node(SESSION_PACKET, _edit_list(5, 10))
    opened = open_header(parse_header(header + b"body"), NODE)
    assert opened.plaintexts == (SESSION_PACKET, _edit_list(5, 10))
    assert opened.edit_list == (5, 10)


def test_bad_magic() -> None:
    assert _code(_prefix(magic=b"crypt5gh") + b"\0" * 200) == "c4gh_not_crypt4gh"
    assert _code(b"\x89PNG\r\n\x1a\n" + b"\0" * 200) == "c4gh_not_crypt4gh"


@pytest.mark.parametrize("version", [0, 2, 0xFFFFFFFF])
def test_other_versions_are_refused(version: int) -> None:
    assert _code(_prefix(version=version) + _for_node(SESSION_PACKET)[16:]) == "c4gh_unsupported_version"


@pytest.mark.parametrize("count", [0, 65, 1 << 20, 0xFFFFFFFF])
def test_packet_counts_out_of_bounds_are_refused_before_reading_packets(count: int) -> None:
    reader = CountingReader(_prefix(count=count) + b"\x6c\0\0\0" * 10_000, size=10**12)
    with pytest.raises(StoredHeaderError) as info:
        read_header(reader)
    assert info.value.code == "c4gh_bad_packet_count"
    assert reader.asked <= HeaderLimits().read_ahead


@pytest.mark.parametrize("length", [0, 3, 4, 7, 64 * 1024 + 1, 0xFFFFFFFF])
def test_packet_lengths_out_of_bounds_are_refused(length: int) -> None:
    reader = CountingReader(_prefix() + struct.pack("<I", length) + b"\0" * 100, size=10**12)
    with pytest.raises(StoredHeaderError) as info:
        read_header(reader)
    assert info.value.code == "c4gh_bad_packet_length"
    assert reader.asked <= HeaderLimits().read_ahead


def test_every_truncation_of_a_header_is_reported_as_truncated() -> None:
    header = _for_node(SESSION_PACKET, SESSION_PACKET)
    for cut in range(len(header)):
        assert _code(header[:cut]) == "c4gh_truncated_header", cut
        with pytest.raises(StoredHeaderError) as info:
            read_header(BytesReader(header[:cut]))
        assert info.value.code == "c4gh_truncated_header", cut


def test_a_reader_whose_object_shrank_gives_a_read_error() -> None:
    header = _for_node(SESSION_PACKET)
    with pytest.raises(StoredReadError) as info:
        read_header(CountingReader(header[:50], size=len(header)))
    assert info.value.code == "c4gh_stored_truncated"


def test_a_header_larger_than_the_cap_is_refused() -> None:
    header = _for_node(SESSION_PACKET, SESSION_PACKET, SESSION_PACKET)
    assert _code(header, HeaderLimits(max_header_bytes=200)) == "c4gh_header_too_large"
    assert parse_header(header, HeaderLimits(max_header_bytes=len(header))).length == len(header)


def test_header_reading_uses_few_reads_however_many_packets() -> None:
    header = _for_node(*[SESSION_PACKET] * 30)  # 30 packets of 108 bytes: 3.2 KiB
    calls: list[tuple[int, int]] = []

    class Recording(BytesReader):
        def read(self, offset: int, length: int) -> bytes:
            calls.append((offset, length))
            return super().read(offset, length)

    parsed = read_header(Recording(header + os.urandom(100_000)))
    assert len(parsed.header.packets) == 30 and parsed.body_offset == len(header)
    assert len(calls) == 1


def test_a_header_for_another_key_is_not_for_this_node() -> None:
    header = _for_node(SESSION_PACKET, node=_key())
    with pytest.raises(StoredHeaderError) as info:
        reencrypt_header(header, NODE, RESEARCHER)
    assert info.value.code == "c4gh_not_for_this_node"
    assert NODE.fingerprint in info.value.message


def _raw_packet(method: int, body: bytes) -> bytes:
    return struct.pack("<II", 8 + len(body), method) + body


@pytest.mark.parametrize(
    "packet",
    [
        _raw_packet(1, os.urandom(100)),  # AES-256-GCM header encryption: not supported, not ours
        _raw_packet(0, bytes(32) + os.urandom(80)),  # low-order (all-zero) writer key
        _raw_packet(0, (2**255 - 19 + 1).to_bytes(32, "little") + os.urandom(80)),  # p + 1: low order, non-canonical
        _raw_packet(0, ((2**255 - 20) | 1 << 255).to_bytes(32, "little") + os.urandom(80)),  # p - 1, top bit set
        _raw_packet(0, os.urandom(20)),  # too short to hold a writer key, nonce and MAC
        _raw_packet(0, os.urandom(200)),  # random bytes: the MAC fails
    ],
    ids=["aes-method", "zero-writer-key", "p-plus-1-writer-key", "p-minus-1-top-bit-writer-key", "short", "garbage"],
)
def test_packets_the_node_cannot_open_are_skipped_and_reported(packet: bytes) -> None:
    header = _prefix(count=1) + packet
    with pytest.raises(StoredHeaderError) as info:
        reencrypt_header(header, NODE, RESEARCHER)
    assert info.value.code == "c4gh_not_for_this_node"


@pytest.mark.parametrize(
    ("plaintexts", "code"),
    [
        ((SESSION_PACKET, struct.pack("<I", 7) + b"x" * 20), "c4gh_unsupported_packet"),
        ((struct.pack("<II", 0, 1) + os.urandom(32),), "c4gh_unsupported_packet"),  # bulk cipher 1
        ((SESSION_PACKET + b"extra",), "c4gh_unsupported_packet"),
        ((SESSION_PACKET, _edit_list(1, 2), _edit_list(3)), "c4gh_unsupported_packet"),
        ((SESSION_PACKET, _edit_list(1, 2)[:-3]), "c4gh_unsupported_packet"),
        ((SESSION_PACKET, struct.pack("<II", 1, 0xFFFFFFFF)), "c4gh_unsupported_packet"),
        ((b"\x00\x00",), "c4gh_unsupported_packet"),
        ((_edit_list(1, 2),), "c4gh_no_session_key"),
    ],
    ids=[
        "unknown-type",
        "bulk-cipher-1",
        "long-session",
        "two-edit-lists",
        "short-edit-list",
        "huge-count",
        "tiny",
        "no-key",
    ],
)
def test_opened_packets_are_checked(plaintexts: tuple[bytes, ...], code: str) -> None:
    with pytest.raises(StoredHeaderError) as info:
        reencrypt_header(_for_node(*plaintexts), NODE, RESEARCHER)
    assert info.value.code == code


def test_bytes_after_the_header_are_refused_by_reencrypt_header() -> None:
    with pytest.raises(StoredHeaderError) as info:
        reencrypt_header(_for_node(SESSION_PACKET) + b"\0", NODE, RESEARCHER)
    assert info.value.code == "c4gh_header_trailing_bytes"


def test_reader_failures_are_typed() -> None:
    class Failing(BytesReader):
        def read(self, offset: int, length: int) -> bytes:
            raise OSError(5, "Input/output error")

    class Overrunning(BytesReader):
        def read(self, offset: int, length: int) -> bytes:
            return b"\0" * (length + 1)

    for reader in (Failing(b"x" * 500), Overrunning(b"x" * 500)):
        with pytest.raises(StoredReadError) as info:
            reencrypt_stored(reader, NODE, RESEARCHER)
        assert info.value.code == "c4gh_stored_read_failed"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_fail_typed(data: bytes) -> None:
    try:
        reencrypt_header(parse_header(data), NODE, RESEARCHER)
    except StoredHeaderError as exc:
        assert exc.code.startswith("c4gh_")


_REAL_SHAPE = _for_node(SESSION_PACKET, _edit_list(3, 4))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_REAL_SHAPE) - 1), st.integers(0, 255), st.integers(0, len(_REAL_SHAPE)))
def test_mutated_headers_fail_typed_or_still_open(index: int, value: int, cut: int) -> None:
    data = bytearray(_REAL_SHAPE)
    data[index] = value
    try:
        header = reencrypt_header(parse_header(bytes(data[:cut])), NODE, RESEARCHER)
    except StoredHeaderError as exc:
        assert exc.code.startswith("c4gh_")
    else:
        assert header.startswith(b"crypt4gh")


def test_the_parser_agrees_with_the_crypt4gh_package_on_real_headers(c4gh: Crypt4GH, keys: Keys) -> None:
    from crypt4gh import header as c4gh_header  # type: ignore[import-untyped]

    stored = c4gh.encrypt(os.urandom(1000), [keys.other, keys.node, keys.third])
    ours = parse_header(stored)
    theirs = list(c4gh_header.parse(io.BytesIO(stored)))
    assert list(ours.packets) == theirs
    assert len(ours.packets) == 3
