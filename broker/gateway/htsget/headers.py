"""Reading the header of a BAM or bgzipped VCF from the data file itself.

The header tells the planner two things: where the header ends (as a virtual offset, so the
header piece of a ticket can stop exactly there) and which references exist.

- BAM (SAM specification 4.2): ``magic "BAM\\1"``, ``l_text``, ``text``, ``n_ref``, then per
  reference ``l_name``, ``name`` (NUL-terminated), ``l_ref``. Every count is bounded by
  :class:`~broker.gateway.htsget.limits.Limits` before it is used.
- VCF (VCF 4.x section 1): every line before the first one not starting with ``#``; the first
  line must be ``##fileformat=VCF...`` and the last ``#CHROM``. ``##contig=<ID=...>`` lines name
  references that may have no records (and so no entry in a tabix index).

The header is read block by block through :func:`~broker.gateway.htsget.bgzf.iter_blocks`, so a
remote store is asked for at most a few large ranges.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from broker.gateway.htsget.bgzf import Block, iter_blocks
from broker.gateway.htsget.errors import HeaderFormatError
from broker.gateway.htsget.limits import DEFAULT_LIMITS, Limits
from broker.gateway.htsget.reader import RandomReader


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference sequence the data file declares."""

    name: str
    length: int | None


@dataclass(frozen=True, slots=True)
class Header:
    """Where the header of a data file ends, and the references it declares."""

    end: int
    """Virtual offset of the first byte after the header (block-aligned when ``end & 0xFFFF == 0``)."""
    tail: bytes
    """Inflated header bytes inside the block at ``end >> 16`` (empty when the header ends on a block boundary)."""
    references: tuple[Reference, ...]
    size: int
    """Inflated size of the header in bytes."""


class _Inflated:
    """Inflated bytes of a BGZF file from its start, pulled block by block on demand, bounded."""

    def __init__(self, reader: RandomReader, limit: int, what: str) -> None:
        self._blocks: Iterator[Block] = iter_blocks(reader, 0)
        self.data = bytearray()
        self.starts: list[int] = []
        self.blocks: list[Block] = []
        self.limit = limit
        self.what = what
        self.at_eof = False

    def pull(self) -> bool:
        """Append one more block's data; False at the end of the file."""
        if self.at_eof:
            return False
        block = next(self._blocks, None)
        if block is None:
            self.at_eof = True
            return False
        if len(self.data) > self.limit:
            raise HeaderFormatError("header_too_large", f"the {self.what} header is larger than {self.limit} bytes")
        self.starts.append(len(self.data))
        self.blocks.append(block)
        self.data += block.data
        return True

    def need(self, n: int) -> None:
        """Make at least ``n`` inflated bytes available, or fail: the header is cut short."""
        if n > self.limit:
            raise HeaderFormatError("header_too_large", f"the {self.what} header is larger than {self.limit} bytes")
        while len(self.data) < n:
            if not self.pull():
                raise HeaderFormatError("header_truncated", f"the {self.what} file ends inside its header")

    def virtual(self, pos: int) -> tuple[int, bytes]:
        """Virtual offset of inflated position ``pos`` and the bytes of its block before it.

        A position at the very end of a block is given as the start of the next block, so a
        header that fills its blocks exactly is recognised as block-aligned.
        """
        for i, block in enumerate(self.blocks):
            start = self.starts[i]
            if pos < start + len(block.data):
                return (block.offset << 16) | (pos - start), block.data[: pos - start]
            if pos == start + len(block.data) and block.data:
                return block.end << 16, b""
        return 0, b""


def read_bam_header(reader: RandomReader, *, limits: Limits = DEFAULT_LIMITS) -> Header:
    """The header of a BAM file: its end and its references with their lengths."""
    src = _Inflated(reader, limits.max_header_bytes, "BAM")
    src.need(8)
    if bytes(src.data[:4]) != b"BAM\x01":
        raise HeaderFormatError("bam_bad_magic", "the data file is not a BAM file (bad magic)")
    (l_text,) = struct.unpack_from("<i", src.data, 4)
    if l_text < 0:
        raise HeaderFormatError("bam_bad_header", f"BAM header has a negative text length ({l_text})")
    pos = 8 + l_text
    src.need(pos + 4)
    (n_ref,) = struct.unpack_from("<i", src.data, pos)
    pos += 4
    if not 0 <= n_ref <= limits.max_references:
        raise HeaderFormatError(
            "bam_bad_header", f"BAM header declares {n_ref} references, outside 0..{limits.max_references}"
        )
    refs: list[Reference] = []
    seen: set[str] = set()
    for _ in range(n_ref):
        src.need(pos + 4)
        (l_name,) = struct.unpack_from("<i", src.data, pos)
        if not 2 <= l_name <= limits.max_name_bytes + 1:
            raise HeaderFormatError("bam_bad_header", f"BAM header has a reference name length of {l_name}")
        src.need(pos + 4 + l_name + 4)
        raw = bytes(src.data[pos + 4 : pos + 4 + l_name])
        (l_ref,) = struct.unpack_from("<i", src.data, pos + 4 + l_name)
        pos += 8 + l_name
        if raw[-1] != 0 or 0 in raw[:-1]:
            raise HeaderFormatError("bam_bad_header", "BAM header has a reference name that is not NUL-terminated")
        try:
            name = raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise HeaderFormatError("bam_bad_header", "BAM header has a reference name that is not UTF-8") from None
        if l_ref < 0:
            raise HeaderFormatError("bam_bad_header", f"BAM header has a negative reference length ({l_ref})")
        if name in seen:
            raise HeaderFormatError("bam_bad_header", "BAM header names a reference twice")
        seen.add(name)
        refs.append(Reference(name, l_ref))
    end, tail = src.virtual(pos)
    return Header(end, tail, tuple(refs), pos)


def read_vcf_header(reader: RandomReader, *, limits: Limits = DEFAULT_LIMITS) -> Header:
    """The header of a bgzipped VCF: its end and the contigs its ``##contig`` lines declare."""
    src = _Inflated(reader, limits.max_header_bytes, "VCF")
    pos = 0
    lines: list[bytes] = []
    while True:
        while pos >= len(src.data) and src.pull():
            pass
        if pos >= len(src.data) or src.data[pos] != ord("#"):
            break
        newline = src.data.find(b"\n", pos)
        while newline < 0:
            if len(src.data) > src.limit:
                raise HeaderFormatError("header_too_large", f"the VCF header is larger than {src.limit} bytes")
            if not src.pull():
                raise HeaderFormatError("vcf_bad_header", "the VCF header does not end with a newline")
            newline = src.data.find(b"\n", pos)
        if newline + 1 > src.limit:
            raise HeaderFormatError("header_too_large", f"the VCF header is larger than {src.limit} bytes")
        lines.append(bytes(src.data[pos:newline]))
        pos = newline + 1
    if not lines or not lines[0].startswith(b"##fileformat=VCF"):
        raise HeaderFormatError("vcf_bad_header", "the data file is not a VCF (no ##fileformat line)")
    if not lines[-1].startswith(b"#CHROM"):
        raise HeaderFormatError("vcf_bad_header", "the VCF header does not end with the #CHROM line")
    refs: list[Reference] = []
    seen: set[str] = set()
    for line in lines:
        if line.startswith(b"##contig=<"):
            contig = _parse_contig(line, limits)
            if contig.name in seen:
                raise HeaderFormatError("vcf_bad_header", "the VCF header declares a contig twice")
            seen.add(contig.name)
            refs.append(contig)
    end, tail = src.virtual(pos)
    return Header(end, tail, tuple(refs), pos)


def _parse_contig(line: bytes, limits: Limits) -> Reference:
    """``##contig=<ID=name,length=n,...>``: key=value pairs, values possibly double-quoted."""
    try:
        text = line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        raise HeaderFormatError("vcf_bad_header", "a VCF ##contig line is not UTF-8") from None
    if not text.endswith(">"):
        raise HeaderFormatError("vcf_bad_header", "a VCF ##contig line does not end with '>'")
    body = text[len("##contig=<") : -1]
    fields: dict[str, str] = {}
    i = 0
    while i < len(body):
        eq = body.find("=", i)
        if eq < 0:
            raise HeaderFormatError("vcf_bad_header", "a VCF ##contig line has a field without '='")
        key = body[i:eq]
        j = eq + 1
        if j < len(body) and body[j] == '"':
            j += 1
            value_chars: list[str] = []
            while j < len(body) and body[j] != '"':
                if body[j] == "\\" and j + 1 < len(body):
                    j += 1
                value_chars.append(body[j])
                j += 1
            if j >= len(body):
                raise HeaderFormatError("vcf_bad_header", "a VCF ##contig line has an unterminated quoted value")
            value = "".join(value_chars)
            j += 1
        else:
            comma = body.find(",", j)
            comma = len(body) if comma < 0 else comma
            value = body[j:comma]
            j = comma
        if j < len(body):
            if body[j] != ",":
                raise HeaderFormatError("vcf_bad_header", "a VCF ##contig line has a malformed field list")
            j += 1
        fields.setdefault(key, value)
        i = j
    name = fields.get("ID", "")
    if not name or len(name.encode()) > limits.max_name_bytes:
        raise HeaderFormatError("vcf_bad_header", "a VCF ##contig line has no usable ID")
    length: int | None = None
    raw_length = fields.get("length")
    if raw_length is not None:
        if not raw_length.isascii() or not raw_length.isdigit() or len(raw_length) > 19:
            raise HeaderFormatError("vcf_bad_header", "a VCF ##contig line has an invalid length")
        length = int(raw_length)
    return Reference(name, length)
