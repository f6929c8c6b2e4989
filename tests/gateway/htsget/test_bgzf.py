"""BGZF blocks: what we write, bgzip and gzip read; what bgzip writes, we read; every malformed
block is a typed BgzfError with a code, never a zlib error or a crash."""

from __future__ import annotations

import contextlib
import gzip
import random
import struct
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.gateway.htsget import BgzfError, BytesReader
from broker.gateway.htsget.bgzf import (
    EOF_BLOCK,
    MAX_BLOCK_SIZE,
    block_header_size,
    block_size,
    compress,
    inflate_all,
    inflate_block,
    iter_blocks,
    read_block,
)
from tests.gateway.htsget.support import Tools, run


def one_block(data: bytes = b"hello, BGZF\n" * 20) -> bytes:
    return compress(data)


def test_eof_block_is_an_empty_block_and_what_bgzip_writes(hts_tools: Tools) -> None:
    assert len(EOF_BLOCK) == 28
    assert inflate_block(EOF_BLOCK) == b""
    assert run(hts_tools.bgzip, "-c", stdin=b"x\n").endswith(EOF_BLOCK)


def test_bgzip_and_gzip_read_what_we_compress(hts_tools: Tools, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(300_000) + b"text " * 50_000
    stream = compress(data) + EOF_BLOCK
    assert gzip.decompress(stream) == data
    path = tmp_path / "ours.gz"
    path.write_bytes(stream)
    assert run(hts_tools.bgzip, "-dc", path) == data


def test_we_read_what_bgzip_compresses(hts_tools: Tools) -> None:
    data = b"".join(b"line %d of the file\n" % i for i in range(40_000))
    stream = run(hts_tools.bgzip, "-c", stdin=data)
    blocks = list(iter_blocks(BytesReader(stream), 0, buffer_size=70_000))
    assert b"".join(b.data for b in blocks) == data
    assert blocks[-1].data == b"" and blocks[-1].end == len(stream)
    assert all(b.size <= MAX_BLOCK_SIZE and len(b.data) <= MAX_BLOCK_SIZE for b in blocks)
    assert inflate_all(stream, max_output=len(data)) == data


def test_incompressible_data_still_fits_in_blocks() -> None:
    data = random.Random(9).randbytes(0xFF00 * 3)
    stream = compress(data)
    sizes = [b.size for b in iter_blocks(BytesReader(stream), 0)]
    assert len(sizes) == 3 and max(sizes) <= MAX_BLOCK_SIZE
    assert gzip.decompress(stream) == data


def test_small_blocks_respect_their_size() -> None:
    data = bytes(range(256)) * 10
    blocks = list(iter_blocks(BytesReader(compress(data, block_data=100)), 0))
    assert [len(b.data) for b in blocks] == [100] * 25 + [60]
    assert compress(b"") == b""
    with pytest.raises(ValueError, match="block_data"):
        compress(data, block_data=0xFF01)


def test_block_size_skips_other_extra_subfields() -> None:
    block = one_block()
    extra = b"XY\x03\x00abc" + block[12:18]
    longer = bytearray(block[:10] + struct.pack("<H", len(extra)) + extra + block[18:])
    struct.pack_into("<H", longer, 12 + 7 + 4, len(longer) - 1)
    assert block_size(bytes(longer)) == len(longer)
    assert inflate_block(bytes(longer)) == inflate_block(block)
    assert block_header_size(BytesReader(bytes(longer)), 0) == len(longer)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda b: b"\x1f\x8c" + b[2:], "bgzf_bad_magic"),
        (lambda b: b[:3] + b"\x0c" + b[4:], "bgzf_bad_magic"),
        (lambda b: b[:10] + b"\x04\x00" + b[12:], "bgzf_bad_extra"),
        (lambda b: b[:12] + b"XC" + b[14:], "bgzf_no_bsize"),
        (lambda b: b[:14] + b"\x03\x00" + b[16:], "bgzf_bad_extra"),
        (lambda b: b[:16] + b"\x05\x00" + b[18:], "bgzf_bad_bsize"),
        (lambda b: b[:16] + struct.pack("<H", len(b)) + b[18:], "bgzf_bad_bsize"),
        (lambda b: b[:-4] + struct.pack("<I", 70_000), "bgzf_bad_isize"),
        (lambda b: b[:-4] + struct.pack("<I", 3), "bgzf_bad_isize"),
        (lambda b: b[:-8] + b"\x00\x00\x00\x00" + b[-4:], "bgzf_bad_crc"),
        (lambda b: b[:18] + b"\xff\xff\xff" + b[21:], "bgzf_bad_deflate"),
        (lambda b: b[:12], "bgzf_truncated"),
        (lambda b: b[:5], "bgzf_truncated"),
    ],
)
def test_malformed_block_is_a_typed_error(mutate: object, code: str) -> None:
    assert callable(mutate)
    bad = mutate(one_block())
    with pytest.raises(BgzfError) as err:
        inflate_block(bad)
    assert err.value.code == code
    assert err.value.status == 500 and err.value.htsget_error == "ServerError"


def test_deflate_stream_ending_early_or_late_is_refused() -> None:
    good = one_block(b"abc" * 100)
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    cdata = deflater.compress(b"abc" * 100) + deflater.flush() + b"junk"
    total = 18 + len(cdata) + 8
    padded = good[:16] + struct.pack("<H", total - 1) + cdata + good[-8:]
    with pytest.raises(BgzfError, match="does not end exactly"):
        inflate_block(padded)


def test_truncated_file_is_a_typed_error() -> None:
    stream = compress(b"x" * 200_000)
    with pytest.raises(BgzfError) as err:
        list(iter_blocks(BytesReader(stream[:-10]), 0))
    assert err.value.code == "bgzf_truncated"
    with pytest.raises(BgzfError):
        read_block(BytesReader(stream), len(stream))
    with pytest.raises(BgzfError):
        read_block(BytesReader(stream[:100]), 0)


def test_inflate_all_refuses_more_than_its_bound() -> None:
    stream = compress(b"\x00" * 1_000_000)
    with pytest.raises(BgzfError) as err:
        inflate_all(stream, max_output=999_999)
    assert err.value.code == "bgzf_too_large"


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=400), value=st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_is_caught_or_harmless(position: int, value: int) -> None:
    """Changing one byte either leaves a valid block (MTIME, OS, ...) or gives a BgzfError."""
    block = bytearray(one_block(bytes(range(256)) + b"tail"))
    position %= len(block)
    original = inflate_block(bytes(block))
    block[position] = value
    with contextlib.suppress(BgzfError):
        assert inflate_block(bytes(block)) == original


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_never_escape_as_other_exceptions(data: bytes) -> None:
    for candidate in (data, b"\x1f\x8b\x08\x04" + data, EOF_BLOCK[:16] + data):
        with contextlib.suppress(BgzfError):
            inflate_block(candidate)
        with contextlib.suppress(BgzfError):
            list(iter_blocks(BytesReader(candidate), 0))


def test_hostile_block_is_refused_fast() -> None:
    """A block claiming a huge ISIZE with a deflate bomb inside costs at most 64 KiB of work."""
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    cdata = bomb.compress(b"\x00" * 10_000_000) + bomb.flush()[:60_000]
    cdata = cdata[:60_000]
    total = 18 + len(cdata) + 8
    block = EOF_BLOCK[:16] + struct.pack("<H", total - 1) + cdata + struct.pack("<II", 0, 65_536)
    started = time.perf_counter()
    with pytest.raises(BgzfError):
        inflate_block(block)
    assert time.perf_counter() - started < 0.5
