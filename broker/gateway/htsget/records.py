"""Bounded record scans that tighten index chunks to the records a region needs.

Index chunks are coarse: htslib folds small bins into their parents, so in a sparse file one
chunk may cover a whole reference, and the linear index only resolves 16 kb windows. Two cuts,
both at record boundaries and both safe whatever the record layout, trim that:

- **end cut**: the file is sorted, so no record at or after the first record of the same
  reference with ``pos >= end`` (or of another reference) can overlap ``[start, end)``. The
  scan reaches it from a lower bound of its offset taken from the index.
- **prefix selection**: records starting before ``start`` are read one by one up to the first
  one starting at or after ``start``; only those that may reach into the region are kept, as
  exact virtual-offset ranges (a 30 kb spliced read no longer drags in the 30 kb of reads
  behind it). For BAM the end of a record is computed as htslib does (``pos`` + reference
  length of the CIGAR, at least 1). For VCF the end is bounded from above by the largest of
  ``POS - 1 + len(REF)``, INFO ``END`` and ``POS + |SVLEN|``, since clients differ in which
  they use; a line whose END or SVLEN does not parse is kept.

All scans of one request share one :class:`ScanBudget` of inflated bytes; when it runs out, or
a scan meets anything it does not understand, it stops and the chunks from there on stay as the
index gave them (more extras, never fewer records). Since selected ranges are a subset of what
was scanned, the budget also bounds the re-compressed inline data they produce. Scans never
raise on odd record contents; broken BGZF blocks still raise
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


class ScanBudget:
    """Inflated bytes the record scans of one request may still read (shared by all its regions)."""

    def __init__(self, total: int) -> None:
        self.remaining = total


class _Stream:
    """Sequential bytes of a BGZF file from a virtual offset, drawing on a shared budget."""

    def __init__(self, blocks: BlockCache, voffset: int, body_end: int, budget: ScanBudget) -> None:
        self.blocks = blocks
        self.body_end = body_end
        if budget.remaining <= 0:
            raise _Stop
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
        if n > self.budget.remaining:
            raise _Stop
        self.budget.remaining -= n
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

    def skip(self, n: int) -> None:
        """Move ``n`` bytes on without keeping them, or :class:`_Stop`."""
        if n > self.budget.remaining:
            raise _Stop
        self.budget.remaining -= n
        while n > 0:
            if self.pos >= len(self.block.data):
                if self.block.end >= self.body_end:
                    raise _Stop
                self.block = self.blocks.get(self.block.end)
                self.pos = 0
                continue
            take = min(n, len(self.block.data) - self.pos)
            self.pos += take
            n -= take

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
            if stop - self.pos > self.budget.remaining:
                raise _Stop
            self.budget.remaining -= stop - self.pos
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
    data, at = stream.block.data, stream.pos
    if at + _BAM_FIXED_SIZE <= len(data):
        # Fast path: the whole record lies in the current block; parse it in place.
        block_size, ref, pos, l_name, _mapq, _bin, n_cigar, flag = _BAM_FIXED.unpack_from(data, at)
        total = block_size + 4
        if (
            at + total <= len(data)
            and total <= stream.budget.remaining
            and block_size - 32 >= l_name + 4 * n_cigar
            and ref >= -1
            and pos >= -1
        ):
            stream.budget.remaining -= total
            stream.pos = at + total
            length = _reference_length(data, at + _BAM_FIXED_SIZE + l_name, n_cigar, flag)
            return _Record(ref, pos, pos + max(length, 1))
    fixed = stream.read(_BAM_FIXED_SIZE)
    block_size, ref, pos, l_name, _mapq, _bin, n_cigar, flag = _BAM_FIXED.unpack_from(fixed)
    rest = block_size - (_BAM_FIXED_SIZE - 4)
    if rest < l_name + 4 * n_cigar or ref < -1 or pos < -1:
        raise _Stop
    stream.skip(l_name)
    cigar = stream.read(4 * n_cigar)
    stream.skip(rest - l_name - 4 * n_cigar)
    return _Record(ref, pos, pos + max(_reference_length(cigar, 0, n_cigar, flag), 1))


def _reference_length(data: bytes, at: int, n_cigar: int, flag: int) -> int:
    """Bases of the reference a record covers: the M, D, N, = and X operations of its CIGAR."""
    if flag & _FLAG_UNMAPPED or n_cigar == 0:
        return 0
    length = 0
    for op in struct.unpack_from(f"<{n_cigar}I", data, at):
        if op & 0xF in _REF_CONSUMING:
            length += op >> 4
    return length


def _vcf_record(stream: _Stream) -> _Record:
    line = stream.line()
    fields = line.rstrip(b"\r\n").split(b"\t", 8)
    if len(fields) < 8 or not fields[1].isdigit() or len(fields[1]) > 19 or not fields[3]:
        raise _Stop
    try:
        chrom = fields[0].decode("utf-8")
    except UnicodeDecodeError:
        raise _Stop from None
    pos = int(fields[1]) - 1
    return _Record(chrom, pos, _vcf_end_bound(pos, len(fields[3]), fields[7]))


def _vcf_end_bound(pos: int, ref_length: int, info: bytes) -> int | None:
    """An upper bound of where a VCF record ends (0-based exclusive), or None if unsure.

    The largest of ``pos + len(REF)``, any ``END`` and ``pos + 1 + |SVLEN|``: htslib sizes a
    record by END when present, others by SVLEN; taking the maximum keeps every reading safe.
    An INFO whose END or SVLEN does not parse gives None (the record is kept).
    """
    end = pos + ref_length
    if b"END" not in info and b"SVLEN" not in info:
        return end
    for entry in info.split(b";"):
        key, _, value = entry.partition(b"=")
        try:
            if key == b"END":
                end = max(end, int(value))
            elif key == b"SVLEN":
                for item in value.split(b","):
                    if item != b".":
                        end = max(end, pos + 1 + abs(int(item)))
        except ValueError:
            return None
    return end


def _matches(record: _Record, target: Target, is_bam: bool) -> bool:
    return record.ref == (target.ref_id if is_bam else target.ref_name)


@dataclass(frozen=True, slots=True)
class Tightening:
    """What a scan found: records to keep before ``resume``, and where the region's records stop."""

    selected: list[tuple[int, int]]
    """Exact virtual-offset ranges of records before ``resume`` that may overlap the region."""
    resume: int | None
    """From here on the chunks are kept as they are; None if the prefix was not verified."""
    cut: int | None
    """No record at or after this offset overlaps the region; None if unknown."""


def tighten(
    blocks: BlockCache,
    scan_from: int,
    end_hint: int | None,
    target: Target,
    *,
    want_prefix: bool,
    is_bam: bool,
    body_end: int,
    budget: ScanBudget,
) -> Tightening:
    """One forward scan for both cuts of a region.

    From ``scan_from`` (a record start: the first chunk's start), when ``want_prefix``, records
    starting before ``target.start`` are read one by one and only those that may reach into the
    region are selected. Then, when ``end_hint`` is given (a record start no later than the
    first record at or past ``target.end``), the scan continues from the later of where it is
    and ``end_hint`` to that first record: the cut.
    """
    selected: list[tuple[int, int]] = []
    resume: int | None = None
    cut: int | None = None
    try:
        stream = _Stream(blocks, scan_from, body_end, budget)
        if want_prefix:
            while True:
                here = stream.tell()
                resume = here
                record = _bam_record(stream) if is_bam else _vcf_record(stream)
                if not _matches(record, target, is_bam) or record.pos >= target.start:
                    if not _matches(record, target, is_bam) or record.pos >= target.end:
                        cut = here
                    break
                if record.end is None or record.end > target.start:
                    after = stream.tell()
                    if selected and selected[-1][1] == here:
                        selected[-1] = (selected[-1][0], after)
                    else:
                        selected.append((here, after))
        if end_hint is not None and cut is None:
            position = resume if resume is not None else scan_from
            if end_hint > position:
                stream = _Stream(blocks, end_hint, body_end, budget)
            elif resume is not None:
                stream = _Stream(blocks, resume, body_end, budget)
            while True:
                here = stream.tell()
                record = _bam_record(stream) if is_bam else _vcf_record(stream)
                if not _matches(record, target, is_bam) or record.pos >= target.end:
                    cut = here
                    break
    except _Stop:
        pass
    return Tightening(selected, resume, cut)
