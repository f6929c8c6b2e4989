"""BGZF (SAM specification section 4.1): block headers, inflating, compressing, the EOF block.

A BGZF file is a series of gzip members ("blocks") of at most 64 KiB each, whose gzip header
carries an extra subfield ``BC`` holding ``BSIZE``, the total block size minus one. Positions
inside such a file are *virtual offsets*: ``coffset << 16 | uoffset``, the block's byte offset
in the file and a byte offset inside its inflated data.

Written here rather than taken from a library because the checks are the point: every field is
validated (magic, flags, ``XLEN`` and its subfields, ``BSIZE`` bounds, the raw deflate stream
ending exactly at the CRC, CRC-32, ``ISIZE``), inflation is capped at the 64 KiB a block may
hold, and every failure is a :class:`~broker.gateway.htsget.errors.BgzfError` with a code;
``zlib.error`` never leaks out. Python's ``zlib`` does the inflating and deflating.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from broker.gateway.htsget.errors import BgzfError
from broker.gateway.htsget.reader import RandomReader

MAX_BLOCK_SIZE = 65536
"""Largest total size of one block (``BSIZE`` is 16 bits) and largest inflated size."""

DEFAULT_BLOCK_DATA = 0xFF00
"""Uncompressed bytes per block when compressing: leaves room for incompressible data."""

HEADER_FIXED = 12
"""Bytes before the extra field: ID1 ID2 CM FLG MTIME(4) XFL OS XLEN(2)."""

_TRAILER = 8
_MAGIC = b"\x1f\x8b\x08\x04"
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
"""The 28-byte empty block that marks the end of a BGZF file."""

_U16 = struct.Struct("<H")
_TRAILER_STRUCT = struct.Struct("<II")


@dataclass(frozen=True, slots=True)
class Block:
    """One BGZF block: where it starts in the file, its compressed size, its inflated bytes."""

    offset: int
    size: int
    data: bytes

    @property
    def end(self) -> int:
        """Offset of the next block."""
        return self.offset + self.size


def block_size(header: bytes | memoryview, offset: int = 0) -> int:
    """Total size (``BSIZE + 1``) of the block whose header starts at ``header[offset]``.

    ``header`` must hold at least the fixed header and the whole extra field; a malformed
    header, a missing or repeated ``BC`` subfield, or a size too small to hold the header
    and trailer is a :class:`BgzfError`.
    """
    view = memoryview(header)
    if len(view) - offset < HEADER_FIXED:
        raise BgzfError("bgzf_truncated", "a BGZF block header is cut short")
    if bytes(view[offset : offset + 4]) != _MAGIC:
        raise BgzfError("bgzf_bad_magic", "not a BGZF block: bad gzip magic, method or flags")
    (xlen,) = _U16.unpack_from(view, offset + 10)
    if xlen < 6:
        raise BgzfError("bgzf_bad_extra", "BGZF block header has an extra field too short for BSIZE")
    if len(view) - offset < HEADER_FIXED + xlen:
        raise BgzfError("bgzf_truncated", "a BGZF block header is cut short")
    pos = offset + HEADER_FIXED
    stop = pos + xlen
    bsize: int | None = None
    while pos < stop:
        if stop - pos < 4:
            raise BgzfError("bgzf_bad_extra", "BGZF extra field has a truncated subfield")
        si1, si2 = view[pos], view[pos + 1]
        (slen,) = _U16.unpack_from(view, pos + 2)
        if stop - pos - 4 < slen:
            raise BgzfError("bgzf_bad_extra", "BGZF extra subfield runs past the extra field")
        if si1 == 66 and si2 == 67:
            if slen != 2 or bsize is not None:
                raise BgzfError("bgzf_bad_extra", "BGZF block must have exactly one BC subfield of length 2")
            (bsize,) = _U16.unpack_from(view, pos + 4)
        pos += 4 + slen
    if bsize is None:
        raise BgzfError("bgzf_no_bsize", "gzip member without the BGZF BC subfield")
    total = bsize + 1
    if total < HEADER_FIXED + xlen + _TRAILER:
        raise BgzfError("bgzf_bad_bsize", f"BGZF BSIZE {bsize} is too small to hold the block header")
    return total


def inflate_block(block: bytes | memoryview) -> bytes:
    """The inflated data of exactly one whole BGZF block (header, deflate stream, CRC, ISIZE)."""
    view = memoryview(block)
    total = block_size(view)
    if total != len(view):
        raise BgzfError("bgzf_bad_bsize", f"BGZF block size {total} does not match the {len(view)} bytes given")
    (xlen,) = _U16.unpack_from(view, 10)
    crc, isize = _TRAILER_STRUCT.unpack_from(view, total - _TRAILER)
    if isize > MAX_BLOCK_SIZE:
        raise BgzfError("bgzf_bad_isize", f"BGZF block claims {isize} inflated bytes, more than 64 KiB")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(view[HEADER_FIXED + xlen : total - _TRAILER], MAX_BLOCK_SIZE + 1)
    except zlib.error as exc:
        raise BgzfError("bgzf_bad_deflate", f"BGZF block holds an invalid deflate stream ({exc})") from None
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise BgzfError("bgzf_bad_deflate", "BGZF deflate stream does not end exactly at the block trailer")
    if len(data) != isize:
        raise BgzfError("bgzf_bad_isize", f"BGZF block inflates to {len(data)} bytes, ISIZE says {isize}")
    if zlib.crc32(data) != crc:
        raise BgzfError("bgzf_bad_crc", "BGZF block fails its CRC-32 check")
    return data


def read_block(reader: RandomReader, offset: int) -> Block:
    """The block starting at byte ``offset`` of ``reader``, inflated and checked."""
    if offset < 0 or offset >= reader.size:
        raise BgzfError("bgzf_truncated", f"no BGZF block at offset {offset}: the file has {reader.size} bytes")
    raw = reader.read(offset, min(MAX_BLOCK_SIZE, reader.size - offset))
    total = block_size(raw)
    if total > len(raw):
        raise BgzfError("bgzf_truncated", f"the BGZF block at offset {offset} runs past the end of the file")
    return Block(offset, total, inflate_block(memoryview(raw)[:total]))


def block_header_size(reader: RandomReader, offset: int) -> int:
    """Total size of the block at ``offset`` from its header alone (one small read)."""
    if offset < 0 or offset >= reader.size:
        raise BgzfError("bgzf_truncated", f"no BGZF block at offset {offset}: the file has {reader.size} bytes")
    head = reader.read(offset, min(HEADER_FIXED + 0xFFFF, reader.size - offset, 64))
    if len(head) >= HEADER_FIXED:
        (xlen,) = _U16.unpack_from(head, 10)
        if HEADER_FIXED + xlen > len(head):
            head = reader.read(offset, min(HEADER_FIXED + xlen, reader.size - offset))
    total = block_size(head)
    if offset + total > reader.size:
        raise BgzfError("bgzf_truncated", f"the BGZF block at offset {offset} runs past the end of the file")
    return total


def iter_blocks(
    reader: RandomReader, offset: int, *, end: int | None = None, buffer_size: int = 1 << 20
) -> Iterator[Block]:
    """Consecutive blocks from ``offset`` up to ``end`` (default: the end of the file).

    Reads ``buffer_size`` bytes at a time so a remote reader is asked few, large questions.
    A block that runs past ``end`` is a :class:`BgzfError`. The caller bounds how many blocks
    it consumes.
    """
    stop = reader.size if end is None else min(end, reader.size)
    buffer_size = max(buffer_size, MAX_BLOCK_SIZE)
    buf = b""
    buf_start = offset
    pos = offset
    while pos < stop:
        rel = pos - buf_start
        if len(buf) - rel < MAX_BLOCK_SIZE and buf_start + len(buf) < stop:
            buf = buf[rel:] + reader.read(buf_start + len(buf), min(buffer_size, stop - buf_start - len(buf)))
            buf_start = pos
            rel = 0
        view = memoryview(buf)
        total = block_size(view, rel)
        if rel + total > len(view):
            raise BgzfError("bgzf_truncated", f"the BGZF block at offset {pos} runs past the end of the data")
        yield Block(pos, total, inflate_block(view[rel : rel + total]))
        pos += total


def inflate_all(data: bytes, *, max_output: int) -> bytes:
    """Inflate a whole BGZF stream held in memory (an index file), refusing more than ``max_output`` bytes."""
    out: list[bytes] = []
    produced = 0
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        total = block_size(view, pos)
        if pos + total > len(view):
            raise BgzfError("bgzf_truncated", "the BGZF stream ends inside a block")
        chunk = inflate_block(view[pos : pos + total])
        produced += len(chunk)
        if produced > max_output:
            raise BgzfError("bgzf_too_large", f"the BGZF stream inflates to more than {max_output} bytes")
        out.append(chunk)
        pos += total
    return b"".join(out)


def _one_block(data: bytes, level: int) -> bytes:
    deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    cdata = deflater.compress(data) + deflater.flush()
    if HEADER_FIXED + 6 + len(cdata) + _TRAILER > MAX_BLOCK_SIZE:
        # Incompressible input: stored deflate blocks add 5 bytes per 64 KiB, always fitting.
        deflater = zlib.compressobj(0, zlib.DEFLATED, -zlib.MAX_WBITS)
        cdata = deflater.compress(data) + deflater.flush()
    total = HEADER_FIXED + 6 + len(cdata) + _TRAILER
    header = _MAGIC + b"\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00" + _U16.pack(total - 1)
    return header + cdata + _TRAILER_STRUCT.pack(zlib.crc32(data), len(data))


def compress(data: bytes, *, level: int = 6, block_data: int = DEFAULT_BLOCK_DATA) -> bytes:
    """``data`` as BGZF blocks of at most ``block_data`` (<= 0xFF00) uncompressed bytes, without EOF block.

    Empty ``data`` gives no blocks at all (an empty block would read as an EOF marker).
    """
    if not 1 <= block_data <= DEFAULT_BLOCK_DATA:
        raise ValueError(f"block_data must be between 1 and {DEFAULT_BLOCK_DATA}")
    return b"".join(_one_block(data[i : i + block_data], level) for i in range(0, len(data), block_data))


def split_virtual(voffset: int) -> tuple[int, int]:
    """``(coffset, uoffset)`` of a virtual offset."""
    return voffset >> 16, voffset & 0xFFFF


def make_virtual(coffset: int, uoffset: int) -> int:
    """The virtual offset of byte ``uoffset`` inside the block at ``coffset``."""
    return (coffset << 16) | uoffset


class BlockCache:
    """Inflated blocks read during one request, so neighbouring chunks and scans read a block once.

    Holds at most ``capacity`` blocks (64 KiB each at most); when full it starts afresh.
    """

    def __init__(self, reader: RandomReader, capacity: int = 64) -> None:
        self.reader = reader
        self.capacity = capacity
        self._blocks: dict[int, Block] = {}

    def get(self, offset: int) -> Block:
        """The checked, inflated block starting at byte ``offset``."""
        block = self._blocks.get(offset)
        if block is None:
            if len(self._blocks) >= self.capacity:
                self._blocks.clear()
            block = self._blocks[offset] = read_block(self.reader, offset)
        return block

    def check_start(self, offset: int) -> None:
        """Fail with :class:`BgzfError` unless a well-formed block header starts at ``offset``."""
        if offset not in self._blocks:
            block_header_size(self.reader, offset)
