"""Bounded record scans that tighten index chunks to the records a region needs.

Index chunks are coarse: htslib folds small bins into their parents, so in a sparse file one
chunk may cover a whole reference, and the linear index only resolves 16 kb windows. Two cuts,
both at record boundaries and both safe whatever the record layout, trim that:

- **end cut**: the file is sorted, so no record at or after the first record of the same
  reference with ``pos >= end`` (or of another reference) can overlap ``[start, end)``. The
  scan starts at a lower bound of that record's offset taken from the index.
- **start cut**: records are dropped from the front while each is *known* not to reach
  ``start``; the scan stops at the first record that may overlap. For BAM the end of a record is
  computed as htslib does (``pos`` + reference length of the CIGAR, at least 1). For VCF a line
  is dropped only if it has no ``END=`` in INFO and no symbolic ALT allele and ``POS - 1 +
  len(REF) <= start``; anything else is kept, since clients differ in how they size such records.

A scan reads at most ``budget`` inflated bytes; when it runs out, or meets anything it does not
understand, it gives up and the chunk stays as the index gave it (more extras, never fewer
records). Scans never raise on odd record contents; broken BGZF blocks still raise
:class:`~broker.gateway.htsget.errors.BgzfError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from broker.gateway.htsget.bgzf import BlockCache

_BAM_FIXED = struct.Struct("<iiiBBHHH")  # block_size, refID, pos, l_read_name, mapq, bin, n_cigar_op, flag
_BAM_FIXED_SIZE = 36  # block_size (4) + the 32 fixed bytes of the record
_REF_CONSUMING = frozenset({0, 2, 3, 7, 8})  # M D N = X
_FLAG_UNMAPPED = 4


@dataclass(frozen=True, slots=True)
class Target:
    """What a scan looks for: reference (BAM id or VCF name) and the 0-based half-open range."""

    ref_id: int
    ref_name: str
    start: int
    end: int


class _Stream:
    """Sequential bytes of a BGZF file from a virtual offset, with an inflated-byte budget."""

    def __init__(self, blocks: BlockCache, voffset: int, body_end: int, budget: int) -> None:
        self.blocks = blocks
        self.body_end = body_end
        self.block = blocks.get(voffset >> 16)
        self.pos = voffset & 0xFFFF
        self.budget = budget
        if self.pos > len(self.block.data):
            raise _Stop

    def tell(self) -> int:
        """Current virtual offset, as the start of the next block when at the end of one."""
        while self.pos >= len(self.block.data) and self.block.end < self.body_end:
            self.block = self.blocks.get(self.block.end)
            self.pos = 0
        return (self.block.offset << 16) | self.pos

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or :class:`_Stop` at the end of the body or of the budget."""
        if n > self.budget:
            raise _Stop
        self.budget -= n
        parts: list[bytes] = []
        while n > 0:
            if self.pos >= len(self.block.data):
                if self.block.end >= self.body_end:
                    raise _Stop
                self.block = self.blocks.get(self.block.end)
                self.pos = 0
                continue
            take = min(n, len(self.block.data) - self.pos)
            parts.append(self.block.data[self.pos : self.pos + take])
            self.pos += take
            n -= take
        return b"".join(parts)

    def line(self) -> bytes:
        """Bytes up to and including the next newline, or :class:`_Stop`."""
        parts: list[bytes] = []
        while True:
            if self.pos >= len(self.block.data):
                if self.block.end >= self.body_end:
                    raise _Stop
                self.block = self.blocks.get(self.block.end)
                self.pos = 0
                continue
            newline = self.block.data.find(b"\n", self.pos)
            stop = len(self.block.data) if newline < 0 else newline + 1
            if stop - self.pos > self.budget:
                raise _Stop
            self.budget -= stop - self.pos
            parts.append(self.block.data[self.pos : stop])
            self.pos = stop
            if newline >= 0:
                return b"".join(parts)


class _Stop(Exception):
    """The scan ends without an answer (end of data, budget, or a record it cannot read)."""


@dataclass(frozen=True, slots=True)
class _Record:
    ref: int | str
    pos: int
    end: int | None
    """0-based exclusive end, or None when it cannot be bounded safely."""


def _bam_record(stream: _Stream) -> _Record:
    fixed = stream.read(_BAM_FIXED_SIZE)
    block_size, ref, pos, l_name, _mapq, _bin, n_cigar, flag = _BAM_FIXED.unpack_from(fixed)
    rest = block_size - (_BAM_FIXED_SIZE - 4)
    if rest < l_name + 4 * n_cigar or ref < -1 or pos < -1:
        raise _Stop
    stream.read(l_name)
    cigar = stream.read(4 * n_cigar)
    stream.read(rest - l_name - 4 * n_cigar)
    length = 0
    if not flag & _FLAG_UNMAPPED:
        for (op,) in struct.iter_unpack("<I", cigar):
            if op & 0xF in _REF_CONSUMING:
                length += op >> 4
    return _Record(ref, pos, pos + max(length, 1))


def _vcf_record(stream: _Stream) -> _Record:
    line = stream.line()
    fields = line.rstrip(b"\r\n").split(b"\t", 8)
    if len(fields) < 8 or not fields[1].isdigit() or len(fields[1]) > 19:
        raise _Stop
    try:
        chrom = fields[0].decode("utf-8")
    except UnicodeDecodeError:
        raise _Stop from None
    pos = int(fields[1]) - 1
    info = fields[7]
    end: int | None = None
    if b"END=" not in info and b"<" not in fields[4] and fields[3]:
        end = pos + len(fields[3])
    return _Record(chrom, pos, end)


def _matches(record: _Record, target: Target, is_bam: bool) -> bool:
    return record.ref == (target.ref_id if is_bam else target.ref_name)


def end_cut(
    blocks: BlockCache, scan_from: int, target: Target, *, is_bam: bool, body_end: int, budget: int
) -> int | None:
    """Virtual offset of the first record at or after ``scan_from`` that cannot overlap ``target``.

    ``scan_from`` must be a record start no later than that record (the index gives one).
    None when the scan gives up.
    """
    try:
        stream = _Stream(blocks, scan_from, body_end, budget)
        while True:
            here = stream.tell()
            record = _bam_record(stream) if is_bam else _vcf_record(stream)
            if not _matches(record, target, is_bam) or record.pos >= target.end:
                return here
    except _Stop:
        return None


def start_cut(
    blocks: BlockCache, scan_from: int, target: Target, *, is_bam: bool, body_end: int, budget: int
) -> int | None:
    """Virtual offset of the first record from ``scan_from`` on that may overlap ``target``.

    Every record between ``scan_from`` and the answer is known not to overlap. When the scan
    gives up it answers the furthest boundary it verified (None if it verified nothing).
    """
    best: int | None = None
    try:
        stream = _Stream(blocks, scan_from, body_end, budget)
        while True:
            best = stream.tell()
            record = _bam_record(stream) if is_bam else _vcf_record(stream)
            if not _matches(record, target, is_bam) or record.end is None or record.end > target.start:
                return best
    except _Stop:
        return best
