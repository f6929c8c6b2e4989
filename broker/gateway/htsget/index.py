"""Strict, bounded readers for BAI, CSI and TBI indexes, and the chunk query htsget needs.

Layouts (SAM specification section 5 for BAI, the CSIv1 and tabix specifications): all
integers little-endian; BAI is stored raw, CSI and TBI are BGZF-compressed.

Why our own reader and not pysam: an htsget ticket is made of *byte ranges of the stored file*,
so the server needs the raw chunk virtual offsets of the index (bins, linear index, ``loffset``).
pysam (htslib) exposes iterators over records, not chunks, and would have to read the data
itself through a local path or its own I/O, while this gateway reads from stores over HTTP
through its own bounded client. The formats are small and fully specified, so the reader here
checks every count against the bytes that remain *before* allocating anything, checks bin
numbers, pseudo-bins, chunk order and trailing bytes, and raises
:class:`~broker.gateway.htsget.errors.IndexFormatError` with a code for every defect.

Query semantics follow htslib's: the chunks of every bin overlapping the region, dropping those
that end before the smallest offset a record overlapping the region can have (the linear index
for BAI/TBI, the ``loffset`` of the deepest existing bin holding the region start for CSI), and
starting no earlier than that offset (it is a record start, so cutting there is exact).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from broker.gateway.htsget.bgzf import inflate_all
from broker.gateway.htsget.errors import IndexFormatError
from broker.gateway.htsget.limits import DEFAULT_LIMITS, Limits

Chunk = tuple[int, int]
"""A half-open range of virtual offsets ``[begin, end)`` holding whole records."""


class IndexKind(StrEnum):
    """Which index format was read."""

    BAI = "BAI"
    CSI = "CSI"
    TBI = "TBI"


@dataclass(frozen=True, slots=True)
class TabixConfig:
    """The tabix column configuration (TBI header, or CSI auxiliary data for VCF)."""

    format: int
    """0 generic, 1 SAM, 2 VCF; bit 0x10000 set means zero-based half-open coordinates."""
    col_seq: int
    col_beg: int
    col_end: int
    meta: int
    """Character code that starts header lines (``#`` for VCF)."""
    skip: int
    """Lines to skip at the start of the file."""

    @property
    def is_vcf(self) -> bool:
        """Whether the index says it covers a VCF."""
        return self.format & 0xFFFF == 2


@dataclass(frozen=True, slots=True)
class ReferenceIndex:
    """The index of one reference sequence."""

    bins: Mapping[int, tuple[Chunk, ...]]
    loffsets: Mapping[int, int]
    """CSI only: per bin, the virtual offset of the first record overlapping the bin."""
    linear: tuple[int, ...]
    """BAI/TBI only: per 16 kb window, the virtual offset of the first record overlapping it."""
    span: Chunk | None
    """From the pseudo-bin: virtual offsets of the reference's first record and past its last."""
    mapped: int | None
    unmapped: int | None


@dataclass(frozen=True, slots=True)
class Index:
    """A parsed BAI, CSI or TBI index."""

    kind: IndexKind
    min_shift: int
    depth: int
    references: tuple[ReferenceIndex, ...]
    names: tuple[str, ...] | None
    """Reference names stored in the index (TBI, and CSI built for VCF); None for BAI and BAM CSI."""
    tabix: TabixConfig | None
    n_no_coor: int | None
    """Number of unplaced unmapped records, when the index records it."""

    @property
    def max_position(self) -> int:
        """First position the binning scheme cannot hold (2**29 for BAI and TBI)."""
        return 1 << (self.min_shift + 3 * self.depth)

    def chunks(self, ref_id: int, begin: int, end: int) -> list[Chunk]:
        """Chunks that may hold records of reference ``ref_id`` overlapping ``[begin, end)``, sorted, unmerged."""
        if not 0 <= ref_id < len(self.references):
            raise ValueError(f"reference id {ref_id} is outside the index")
        end = min(end, self.max_position)
        if begin >= end:
            return []
        ref = self.references[ref_id]
        found: list[Chunk] = []
        for bin_id in self._overlapping_bins(ref, begin, end):
            found.extend(ref.bins[bin_id])
        min_off = self._min_offset(ref, begin)
        kept = [(max(b, min_off), e) for b, e in found if e > min_off]
        kept.sort()
        return kept

    def lower_bound(self, ref_id: int, position: int) -> int:
        """A record-start virtual offset no later than any record of ``ref_id`` overlapping ``position`` or after it."""
        return self._min_offset(self.references[ref_id], min(position, self.max_position - 1))

    def placed_end(self) -> int | None:
        """Virtual offset just past the last record placed on a reference (unplaced records follow)."""
        best: int | None = None
        for ref in self.references:
            ends = [e for chunks in ref.bins.values() for _, e in chunks]
            if ref.span is not None:
                ends.append(ref.span[1])
            if ends and (best is None or max(ends) > best):
                best = max(ends)
        return best

    def _overlapping_bins(self, ref: ReferenceIndex, begin: int, end: int) -> list[int]:
        last = end - 1
        wanted = 0
        for level in range(self.depth + 1):
            shift = self.min_shift + 3 * (self.depth - level)
            wanted += (last >> shift) - (begin >> shift) + 1
        if wanted <= len(ref.bins):
            out = []
            for level in range(self.depth + 1):
                shift = self.min_shift + 3 * (self.depth - level)
                first = _level_offset(level)
                for k in range(begin >> shift, (last >> shift) + 1):
                    if first + k in ref.bins:
                        out.append(first + k)
            return out
        return [b for b in ref.bins if self._bin_overlaps(b, begin, end)]

    def _bin_overlaps(self, bin_id: int, begin: int, end: int) -> bool:
        level = 0
        while level < self.depth and bin_id >= _level_offset(level + 1):
            level += 1
        shift = self.min_shift + 3 * (self.depth - level)
        k = bin_id - _level_offset(level)
        return (k << shift) < end and ((k + 1) << shift) > begin

    def _min_offset(self, ref: ReferenceIndex, begin: int) -> int:
        if self.kind is IndexKind.CSI:
            bin_id = _level_offset(self.depth) + (begin >> self.min_shift)
            while True:
                if bin_id in ref.loffsets:
                    return ref.loffsets[bin_id]
                if bin_id == 0:
                    return 0
                bin_id = (bin_id - 1) >> 3
        if not ref.linear:
            return 0
        return ref.linear[min(begin >> self.min_shift, len(ref.linear) - 1)]


def _level_offset(level: int) -> int:
    return ((1 << (3 * level)) - 1) // 7


class _Cursor:
    """Bounds-checked little-endian reads over index bytes."""

    def __init__(self, data: bytes, kind: str) -> None:
        self.view = memoryview(data)
        self.pos = 0
        self.kind = kind

    @property
    def remaining(self) -> int:
        return len(self.view) - self.pos

    def _need(self, n: int, field: str) -> None:
        if n > self.remaining:
            raise IndexFormatError("index_truncated", f"{self.kind} index ends inside {field}")

    def i32(self, field: str) -> int:
        self._need(4, field)
        (value,) = struct.unpack_from("<i", self.view, self.pos)
        self.pos += 4
        return int(value)

    def u32(self, field: str) -> int:
        self._need(4, field)
        (value,) = struct.unpack_from("<I", self.view, self.pos)
        self.pos += 4
        return int(value)

    def u64s(self, n: int, field: str) -> tuple[int, ...]:
        self._need(8 * n, field)
        values = struct.unpack_from(f"<{n}Q", self.view, self.pos)
        self.pos += 8 * n
        return values

    def take(self, n: int, field: str) -> bytes:
        self._need(n, field)
        out = bytes(self.view[self.pos : self.pos + n])
        self.pos += n
        return out

    def count(self, field: str, unit: int, limit: int) -> int:
        """A non-negative int32 count of items of at least ``unit`` bytes each that fit in what remains."""
        n = self.i32(field)
        if n < 0:
            raise IndexFormatError("index_bad_count", f"{self.kind} index has a negative {field} ({n})")
        if n > limit:
            raise IndexFormatError("index_too_large", f"{self.kind} index {field} {n} exceeds the limit {limit}")
        if n * unit > self.remaining:
            raise IndexFormatError("index_truncated", f"{self.kind} index {field} {n} does not fit in its bytes")
        return n


def read_index(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Index:
    """Parse a BAI (raw), CSI or TBI (BGZF) index; the kind is recognised by its magic."""
    if len(data) > limits.max_index_bytes:
        raise IndexFormatError("index_too_large", f"index of {len(data)} bytes exceeds {limits.max_index_bytes}")
    if data[:4] == b"BAI\x01":
        return _read_bai_like(_Cursor(data, "BAI"), IndexKind.BAI, limits)
    if data[:2] != b"\x1f\x8b":
        raise IndexFormatError("index_bad_magic", "not a BAI, CSI or TBI index")
    raw = inflate_all(data, max_output=limits.max_index_bytes)
    if raw[:4] == b"TBI\x01":
        return _read_bai_like(_Cursor(raw, "TBI"), IndexKind.TBI, limits)
    if raw[:4] == b"CSI\x01":
        return _read_csi(_Cursor(raw, "CSI"), limits)
    raise IndexFormatError("index_bad_magic", "compressed index is neither CSI nor TBI")


def _read_tabix_config(cur: _Cursor, n_ref: int, limits: Limits) -> tuple[TabixConfig, tuple[str, ...]]:
    fields = [cur.i32(name) for name in ("format", "col_seq", "col_beg", "col_end", "meta", "skip")]
    config = TabixConfig(*fields)
    if config.format & ~0x10000 not in (0, 1, 2):
        raise IndexFormatError("index_bad_tabix", f"{cur.kind} index has unknown tabix format {config.format}")
    if not 0 <= config.meta < 256 or config.skip < 0:
        raise IndexFormatError("index_bad_tabix", f"{cur.kind} index has an invalid meta character or skip count")
    l_nm = cur.count("l_nm", 1, limits.max_aux_bytes)
    names = _split_names(cur.take(l_nm, "names"), n_ref, cur.kind, limits)
    return config, names


def _split_names(blob: bytes, n_ref: int, kind: str, limits: Limits) -> tuple[str, ...]:
    if n_ref == 0 and not blob:
        return ()
    if not blob.endswith(b"\x00"):
        raise IndexFormatError("index_bad_names", f"{kind} index name list is not NUL-terminated")
    parts = blob[:-1].split(b"\x00")
    if len(parts) != n_ref:
        raise IndexFormatError("index_bad_names", f"{kind} index lists {len(parts)} names for {n_ref} references")
    names: list[str] = []
    for part in parts:
        if not part or len(part) > limits.max_name_bytes:
            raise IndexFormatError("index_bad_names", f"{kind} index has an empty or over-long reference name")
        try:
            names.append(part.decode("utf-8"))
        except UnicodeDecodeError:
            raise IndexFormatError("index_bad_names", f"{kind} index has a reference name that is not UTF-8") from None
    if len(set(names)) != len(names):
        raise IndexFormatError("index_bad_names", f"{kind} index names a reference twice")
    return tuple(names)


def _read_bai_like(cur: _Cursor, kind: IndexKind, limits: Limits) -> Index:
    cur.take(4, "magic")
    n_ref = cur.count("n_ref", 8, limits.max_references)
    tabix: TabixConfig | None = None
    names: tuple[str, ...] | None = None
    if kind is IndexKind.TBI:
        tabix, names = _read_tabix_config(cur, n_ref, limits)
        if n_ref * 8 > cur.remaining:
            raise IndexFormatError("index_truncated", "TBI index n_ref does not fit in its bytes")
    refs = tuple(_read_reference(cur, 14, 5, csi=False) for _ in range(n_ref))
    return Index(kind, 14, 5, refs, names, tabix, _read_tail(cur))


def _read_csi(cur: _Cursor, limits: Limits) -> Index:
    cur.take(4, "magic")
    min_shift = cur.i32("min_shift")
    depth = cur.i32("depth")
    if not (1 <= min_shift <= 32 and 0 <= depth <= 10 and min_shift + 3 * depth <= 63):
        raise IndexFormatError("index_bad_scheme", f"CSI index has unusable min_shift {min_shift} / depth {depth}")
    l_aux = cur.count("l_aux", 1, limits.max_aux_bytes)
    aux = cur.take(l_aux, "aux")
    n_ref = cur.count("n_ref", 4, limits.max_references)
    tabix: TabixConfig | None = None
    names: tuple[str, ...] | None = None
    if l_aux:
        aux_cur = _Cursor(aux, "CSI")
        tabix, names = _read_tabix_config(aux_cur, n_ref, limits)
        if aux_cur.remaining:
            raise IndexFormatError("index_bad_aux", "CSI auxiliary data is longer than its tabix configuration")
    refs = tuple(_read_reference(cur, min_shift, depth, csi=True) for _ in range(n_ref))
    return Index(IndexKind.CSI, min_shift, depth, refs, names, tabix, _read_tail(cur))


def _read_reference(cur: _Cursor, min_shift: int, depth: int, *, csi: bool) -> ReferenceIndex:
    n_bins = _level_offset(depth + 1)
    pseudo = n_bins + 1
    per_bin = 16 if csi else 8
    n_bin = cur.count("n_bin", per_bin, n_bins + 1)
    bins: dict[int, tuple[Chunk, ...]] = {}
    loffsets: dict[int, int] = {}
    span: Chunk | None = None
    mapped: int | None = None
    unmapped: int | None = None
    seen_pseudo = False
    for _ in range(n_bin):
        bin_id = cur.u32("bin")
        loffset = cur.u64s(1, "loffset")[0] if csi else 0
        n_chunk = cur.count("n_chunk", 16, 1 << 31)
        flat = cur.u64s(2 * n_chunk, "chunks")
        if bin_id == pseudo:
            if seen_pseudo or n_chunk != 2:
                raise IndexFormatError("index_bad_pseudo_bin", f"{cur.kind} index has a malformed pseudo-bin")
            seen_pseudo = True
            if flat[0] > flat[1]:
                raise IndexFormatError("index_bad_chunk", f"{cur.kind} index pseudo-bin span ends before it starts")
            span, mapped, unmapped = (flat[0], flat[1]), flat[2], flat[3]
            continue
        if bin_id >= n_bins:
            raise IndexFormatError("index_bad_bin", f"{cur.kind} index has bin {bin_id}, beyond the {n_bins} bins")
        if bin_id in bins:
            raise IndexFormatError("index_bad_bin", f"{cur.kind} index lists bin {bin_id} twice")
        chunks = tuple(zip(flat[0::2], flat[1::2], strict=True))
        for b, e in chunks:
            if b > e:
                raise IndexFormatError("index_bad_chunk", f"{cur.kind} index has a chunk that ends before it starts")
        bins[bin_id] = chunks
        if csi:
            loffsets[bin_id] = loffset
    linear: tuple[int, ...] = ()
    if not csi:
        n_intv = cur.count("n_intv", 8, 1 << (32 - min_shift))
        linear = cur.u64s(n_intv, "linear index")
    return ReferenceIndex(bins, loffsets, linear, span, mapped, unmapped)


def _read_tail(cur: _Cursor) -> int | None:
    if cur.remaining == 0:
        return None
    if cur.remaining == 8:
        return cur.u64s(1, "n_no_coor")[0]
    raise IndexFormatError("index_trailing_bytes", f"{cur.kind} index has {cur.remaining} unexpected trailing bytes")
