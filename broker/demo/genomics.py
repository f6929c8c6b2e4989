"""Synthetic genomic files for the demo: a bgzipped VCF with its .tbi, a BAM with its .bai.

No patient data and nothing downloaded: a seeded random reference, reads copied from it and
SNPs placed on it. Written here in pure Python on the project's own BGZF code
(:mod:`broker.gateway.htsget.bgzf`) so the demo needs neither pysam nor htslib; the indexes
follow the SAM/BAM and tabix specifications (UCSC binning, 16 kb linear index, the pseudo-bin
with the mapped/unmapped counts), so samtools, bcftools, tabix and htsget clients read them
by region. The tests check exactly that with the real tools.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from broker.gateway.htsget.bgzf import DEFAULT_BLOCK_DATA, EOF_BLOCK, compress, make_virtual

MIN_SHIFT = 14
"""BAI/TBI linear-index windows are 16 kb."""

PSEUDO_BIN = 37450
"""The bin that carries a reference's span and mapped/unmapped counts (SAM spec 5.2)."""

READ_LENGTH = 100
SEQ_CODES = "=ACMGRSVTWYHKDBN"


@dataclass(frozen=True)
class Contig:
    """A synthetic reference sequence."""

    name: str
    length: int


CONTIGS = (Contig("chr1", 120_000), Contig("chr2", 70_000))
"""Two contigs, long enough that the linear index has several windows."""


def reg2bin(begin: int, end: int) -> int:
    """The smallest UCSC bin holding ``[begin, end)`` (0-based, end exclusive; SAM spec 5.3)."""
    end -= 1
    for shift, offset in ((14, 4681), (17, 585), (20, 73), (23, 9), (26, 1)):
        if begin >> shift == end >> shift:
            return offset + (begin >> shift)
    return 0


class BgzfWriter:
    """BGZF output that tells the virtual offset of every record; a record never spans two blocks."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.buffer = bytearray()

    def tell(self) -> int:
        return make_virtual(len(self.out), len(self.buffer))

    def write(self, data: bytes) -> tuple[int, int]:
        """Append one record; returns its (start, end) virtual offsets."""
        if len(data) > DEFAULT_BLOCK_DATA:
            raise ValueError("a demo record must fit in one BGZF block")
        if len(self.buffer) + len(data) > DEFAULT_BLOCK_DATA:
            self.flush()
        start = self.tell()
        self.buffer += data
        return start, self.tell()

    def flush(self) -> None:
        if self.buffer:
            self.out += compress(bytes(self.buffer))
            self.buffer.clear()

    def finish(self) -> bytes:
        self.flush()
        return bytes(self.out) + EOF_BLOCK


@dataclass
class _RefIndex:
    """What the index of one reference collects while records are written."""

    bins: dict[int, list[list[int]]] = field(default_factory=dict)
    linear: dict[int, int] = field(default_factory=dict)
    first: int | None = None
    last: int = 0
    count: int = 0

    def add(self, begin: int, end: int, start: int, stop: int) -> None:
        chunks = self.bins.setdefault(reg2bin(begin, end), [])
        if chunks and chunks[-1][1] == start:
            chunks[-1][1] = stop  # the previous record of this bin ends where this one starts: one chunk
        else:
            chunks.append([start, stop])
        for window in range(begin >> MIN_SHIFT, ((end - 1) >> MIN_SHIFT) + 1):
            self.linear.setdefault(window, start)
        self.first = start if self.first is None else self.first
        self.last = stop
        self.count += 1

    def encode(self) -> bytes:
        """``n_bin``, bins with chunks, the pseudo-bin, ``n_intv`` and the linear index (BAI/TBI layout)."""
        parts = [struct.pack("<i", len(self.bins) + (1 if self.count else 0))]
        for bin_id in sorted(self.bins):
            chunks = self.bins[bin_id]
            parts.append(struct.pack("<Ii", bin_id, len(chunks)))
            parts += [struct.pack("<QQ", b, e) for b, e in chunks]
        if self.count:
            parts.append(struct.pack("<IiQQQQ", PSEUDO_BIN, 2, self.first or 0, self.last, self.count, 0))
        windows = max(self.linear) + 1 if self.linear else 0
        filled: list[int] = []
        previous = self.first or 0
        for window in range(windows):
            previous = self.linear.get(window, previous)  # an empty window takes the one before it (never later)
            filled.append(previous)
        parts.append(struct.pack("<i", windows))
        parts += [struct.pack("<Q", offset) for offset in filled]
        return b"".join(parts)


def _reference(rnd: random.Random, contig: Contig) -> str:
    return "".join(rnd.choice("ACGT") for _ in range(contig.length))


def _pack_seq(seq: str) -> bytes:
    codes = [SEQ_CODES.index(base) for base in seq]
    if len(codes) % 2:
        codes.append(0)
    return bytes((codes[i] << 4) | codes[i + 1] for i in range(0, len(codes), 2))


def bam_record(ref_id: int, pos: int, name: str, seq: str, reverse: bool) -> bytes:
    """One mapped single-end read with an all-match CIGAR (SAM spec 4.2)."""
    read_name = name.encode("ascii") + b"\x00"
    cigar = struct.pack("<I", (len(seq) << 4) | 0)  # op 0: M
    fixed = struct.pack(
        "<iiBBHHHIiii",
        ref_id,
        pos,
        len(read_name),
        60,  # mapq
        reg2bin(pos, pos + len(seq)),
        1,  # n_cigar_op
        0x10 if reverse else 0,
        len(seq),
        -1,
        -1,
        0,
    )
    body = fixed + read_name + cigar + _pack_seq(seq) + bytes([30] * len(seq))
    return struct.pack("<i", len(body)) + body


def _bam_header(contigs: Iterable[Contig]) -> bytes:
    text = "@HD\tVN:1.6\tSO:coordinate\n"
    text += "".join(f"@SQ\tSN:{c.name}\tLN:{c.length}\n" for c in contigs)
    text += "@RG\tID:demo\tSM:SYNTHETIC-1\tDS:synthetic reads, no patient data\n"
    text += "@PG\tID:ga4gh-broker-demo\tPN:ga4gh-broker demo\n"
    raw = text.encode("ascii")
    parts = [b"BAM\x01", struct.pack("<i", len(raw)), raw, struct.pack("<i", len(CONTIGS))]
    for c in contigs:
        name = c.name.encode("ascii") + b"\x00"
        parts += [struct.pack("<i", len(name)), name, struct.pack("<i", c.length)]
    return b"".join(parts)


def write_bam(path: Path, references: dict[str, str], step: int = 250) -> int:
    """A coordinate-sorted BAM at ``path`` and its BAI at ``path.bai``; returns the number of reads."""
    writer = BgzfWriter()
    writer.write(_bam_header(CONTIGS))
    writer.flush()
    indexes = [_RefIndex() for _ in CONTIGS]
    count = 0
    for ref_id, contig in enumerate(CONTIGS):
        sequence = references[contig.name]
        for i, pos in enumerate(range(0, contig.length - READ_LENGTH, step)):
            record = bam_record(
                ref_id, pos, f"demo-{contig.name}-{i:05d}", sequence[pos : pos + READ_LENGTH], bool(i % 2)
            )
            start, stop = writer.write(record)
            indexes[ref_id].add(pos, pos + READ_LENGTH, start, stop)
            count += 1
    path.write_bytes(writer.finish())
    bai = [b"BAI\x01", struct.pack("<i", len(CONTIGS))] + [ix.encode() for ix in indexes] + [struct.pack("<Q", 0)]
    path.with_name(path.name + ".bai").write_bytes(b"".join(bai))
    return count


def write_vcf(path: Path, references: dict[str, str], rnd: random.Random, step: int = 400) -> int:
    """A bgzipped VCF at ``path`` and its tabix index at ``path.tbi``; returns the number of variants."""
    writer = BgzfWriter()
    header = [
        "##fileformat=VCFv4.3",
        "##source=ga4gh-broker demo (synthetic genotypes, no patient data)",
        *(f"##contig=<ID={c.name},length={c.length}>" for c in CONTIGS),
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tSYNTHETIC-1\tSYNTHETIC-2",
    ]
    writer.write(("\n".join(header) + "\n").encode("ascii"))
    writer.flush()
    indexes = [_RefIndex() for _ in CONTIGS]
    count = 0
    genotypes = ("0/0", "0/1", "1/1")
    for ref_id, contig in enumerate(CONTIGS):
        sequence = references[contig.name]
        for begin in range(step // 2, contig.length, step):
            ref = sequence[begin]
            alt = rnd.choice([b for b in "ACGT" if b != ref])
            line = (
                f"{contig.name}\t{begin + 1}\tdemo{count + 1}\t{ref}\t{alt}\t50\tPASS\tDP={rnd.randint(10, 60)}\tGT"
                f"\t{rnd.choice(genotypes)}\t{rnd.choice(genotypes)}\n"
            )
            start, stop = writer.write(line.encode("ascii"))
            indexes[ref_id].add(begin, begin + len(ref), start, stop)
            count += 1
    path.write_bytes(writer.finish())
    names = b"".join(c.name.encode("ascii") + b"\x00" for c in CONTIGS)
    # format 2 (VCF), sequence column 1, begin column 2, no end column, '#' comments, no skipped lines
    tbi = [b"TBI\x01", struct.pack("<8i", len(CONTIGS), 2, 1, 2, 0, ord("#"), 0, len(names)), names]
    tbi += [ix.encode() for ix in indexes] + [struct.pack("<Q", 0)]
    path.with_name(path.name + ".tbi").write_bytes(compress(b"".join(tbi)) + EOF_BLOCK)
    return count


@dataclass(frozen=True)
class GeneratedFiles:
    """What :func:`write_demo_files` wrote: file paths (relative to the root) with their sha-256."""

    checksums: dict[str, str]
    reads: int
    variants: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_demo_files(root: Path, vcf_dataset: str, bam_dataset: str, seed: int = 20261203) -> GeneratedFiles:
    """``root/<vcf_dataset>/demo.vcf.gz`` (+ .tbi) and ``root/<bam_dataset>/demo.bam`` (+ .bai), and
    ``root/SHA256SUMS`` (outside the datasets, so it is no object of theirs). Same seed, same bytes."""
    rnd = random.Random(seed)  # noqa: S311 - reproducible synthetic data, not a secret
    references = {c.name: _reference(rnd, c) for c in CONTIGS}
    (root / vcf_dataset).mkdir(parents=True, exist_ok=True)
    (root / bam_dataset).mkdir(parents=True, exist_ok=True)
    variants = write_vcf(root / vcf_dataset / "demo.vcf.gz", references, rnd)
    reads = write_bam(root / bam_dataset / "demo.bam", references)
    names = [
        f"{vcf_dataset}/demo.vcf.gz",
        f"{vcf_dataset}/demo.vcf.gz.tbi",
        f"{bam_dataset}/demo.bam",
        f"{bam_dataset}/demo.bam.bai",
    ]
    checksums = {name: sha256_of(root / name) for name in names}
    (root / "SHA256SUMS").write_text("".join(f"{sha}  {name}\n" for name, sha in checksums.items()), encoding="ascii")
    return GeneratedFiles(checksums, reads, variants)
