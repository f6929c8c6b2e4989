"""Synthetic BAM and VCF files made at test time with the reference tools, and the helpers that
assemble an htsget answer and ask samtools/bcftools what it holds.

No downloads and no real samples: every read and variant comes from a seeded random generator.
"""

from __future__ import annotations

import functools
import gzip
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from broker.gateway.htsget import ByteRange, FileReader, Format, Inline, Piece, Region, open_indexed, plan
from broker.gateway.htsget.bgzf import EOF_BLOCK, compress
from broker.gateway.htsget.limits import DEFAULT_LIMITS, Limits
from tests.support.parts import require_binary

REFS = [("chr1", 300_000), ("chr2", 200_000), ("chr3", 150_000), ("chrEmpty", 50_000)]
"""References of the synthetic files; chrEmpty has no records at all."""


@dataclass(frozen=True)
class Tools:
    samtools: str
    bcftools: str
    tabix: str
    bgzip: str


def tools() -> Tools:
    """The reference tools, or a loud skip (a failure under CI)."""
    why = "htsget answers are judged by the reference tools"
    return Tools(
        samtools=require_binary("samtools", why),
        bcftools=require_binary("bcftools", why),
        tabix=require_binary("tabix", why),
        bgzip=require_binary("bgzip", why),
    )


def run(*args: str | Path, stdin: bytes | None = None) -> bytes:
    """Run a tool, failing the test with its stderr when it fails."""
    proc = subprocess.run([str(a) for a in args], input=stdin, capture_output=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    return proc.stdout


@functools.cache
def run_cached(*args: str | Path) -> bytes:
    """:func:`run` for questions about the original files, which never change within a session."""
    return run(*args)


def lines(output: bytes) -> list[str]:
    return [line for line in output.decode().split("\n") if line]


@dataclass(frozen=True)
class Sample:
    """A data file with its indexes."""

    path: Path
    indexes: dict[str, Path]
    format: Format


def _random_seq(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choice("ACGT") for _ in range(n))


def _sam_text(rnd: random.Random) -> str:
    out = ["@HD\tVN:1.6\tSO:unsorted"]
    out += [f"@SQ\tSN:{name}\tLN:{length}" for name, length in REFS]
    out.append("@PG\tID:synthetic\tPN:htsget-tests")
    n = 0

    def read(ref: str, pos: int, cigar: str, qlen: int, flag: int = 0) -> None:
        nonlocal n
        n += 1
        out.append(f"q{n:06d}\t{flag}\t{ref}\t{pos}\t60\t{cigar}\t*\t0\t0\t{_random_seq(rnd, qlen)}\t*")

    shapes = [("100M", 100, 100), ("30S70M", 100, 70), ("40M2I58M", 100, 98), ("50M3D50M", 100, 103)]
    for ref, length, count in (("chr1", 300_000, 4000), ("chr2", 200_000, 2500), ("chr3", 150_000, 40)):
        for _ in range(count):
            cigar, qlen, span = rnd.choice(shapes)
            read(ref, rnd.randint(1, length - span), cigar, qlen)
        for _ in range(count // 100):  # spliced reads crossing 16 kb windows land in higher bins
            gap = rnd.randint(5_000, 40_000)
            read(ref, rnd.randint(1, length - gap - 100), f"50M{gap}N50M", 100)
        for _ in range(count // 50):  # placed unmapped reads: RNAME and POS of a mate, flag 4
            read(ref, rnd.randint(1, length - 1), "*", 50, flag=4)
    for _ in range(8000):  # a dense pile so chunks span many BGZF blocks
        cigar, qlen, span = rnd.choice(shapes)
        read("chr1", rnd.randint(100_000, 110_000), cigar, qlen)
    for _ in range(300):  # unplaced unmapped reads
        n += 1
        out.append(f"u{n:06d}\t4\t*\t0\t0\t*\t*\t0\t0\t{_random_seq(rnd, 60)}\t*")
    return "\n".join(out) + "\n"


def _vcf_text(rnd: random.Random, long_info: bool) -> str:
    out = ["##fileformat=VCFv4.2"]
    out += [f"##contig=<ID={name},length={length}>" for name, length in REFS]
    out += [
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##INFO=<ID=END,Number=1,Type=Integer,Description="End position">',
        '##INFO=<ID=SVTYPE,Number=1,Type=String,Description="SV type, with a comma, and \\"quotes\\"">',
        '##INFO=<ID=PAD,Number=1,Type=String,Description="Padding">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    scale = 1 if long_info else 4  # tiny-block files stay small: every block costs the tools time
    for ref, length, count in (
        ("chr1", 300_000, 3_000 * scale),
        ("chr2", 200_000, 1_500 * scale),
        ("chr3", 150_000, 12),
    ):
        positions = sorted(rnd.sample(range(1, length - 6000), count))
        for i, pos in enumerate(positions):
            kind = rnd.random()
            info = f"DP={rnd.randint(1, 99)}"
            if kind < 0.05:
                ref_allele, alt = _random_seq(rnd, rnd.randint(2, 60)), "A"
            elif kind < 0.07:
                ref_allele, alt = "N", "<DEL>"
                info += f";SVTYPE=DEL;END={pos + rnd.randint(100, 5000)}"
            else:
                ref_allele, alt = rnd.choice("ACGT"), rnd.choice("ACGT")
            if long_info and rnd.random() < 0.3:
                info += ";PAD=" + "x" * rnd.randint(200, 900)
            out.append(f"{ref}\t{pos}\tv{ref}_{i}\t{ref_allele}\t{alt}\t50\tPASS\t{info}")
    return "\n".join(out) + "\n"


def make_bam(t: Tools, folder: Path, *, small_blocks: bool, seed: int = 11) -> Sample:
    """A coordinate-sorted BAM with BAI and CSI; ``small_blocks`` re-blocks it so records span blocks."""
    folder.mkdir(parents=True, exist_ok=True)
    sam = folder / "reads.sam"
    sam.write_text(_sam_text(random.Random(seed)))
    bam = folder / "reads.bam"
    run(t.samtools, "sort", "-o", bam, sam)
    if small_blocks:
        raw = gzip.decompress(bam.read_bytes())
        bam.write_bytes(compress(raw, block_data=997) + EOF_BLOCK)
    run(t.samtools, "index", "-b", bam, folder / "reads.bam.bai")
    run(t.samtools, "index", "-c", bam, folder / "reads.bam.csi")
    return Sample(bam, {"bai": folder / "reads.bam.bai", "csi": folder / "reads.bam.csi"}, Format.BAM)


def make_vcf(t: Tools, folder: Path, *, small_blocks: bool, seed: int = 5) -> Sample:
    """A bgzipped VCF with TBI and CSI; ``small_blocks`` writes tiny blocks with long lines spanning them."""
    folder.mkdir(parents=True, exist_ok=True)
    text = _vcf_text(random.Random(seed), long_info=small_blocks).encode()
    vcf = folder / "variants.vcf.gz"
    if small_blocks:
        vcf.write_bytes(compress(text, block_data=257) + EOF_BLOCK)
    else:
        vcf.write_bytes(run(t.bgzip, "-c", stdin=text))
    run(t.tabix, "-p", "vcf", vcf)
    run(t.bcftools, "index", "-c", "-o", folder / "variants.vcf.gz.csi", vcf)
    return Sample(vcf, {"tbi": folder / "variants.vcf.gz.tbi", "csi": folder / "variants.vcf.gz.csi"}, Format.VCF)


def assemble(data: bytes, pieces: list[Piece]) -> bytes:
    """What an htsget client gets by fetching every piece in order and concatenating."""
    out = bytearray()
    for piece in pieces:
        if isinstance(piece, ByteRange):
            assert 0 <= piece.start <= piece.end < len(data)
            out += data[piece.start : piece.end + 1]
        else:
            assert isinstance(piece, Inline)
            out += piece.data
    return bytes(out)


def answer(
    sample: Sample,
    index: str,
    *,
    regions: list[Region] | None = None,
    class_: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[bytes, list[Piece]]:
    """Plan a request on a sample and assemble the answer bytes."""
    with FileReader(sample.path) as reader:
        opened = open_indexed(reader, sample.indexes[index].read_bytes(), sample.format, limits=limits)
        pieces = plan(reader, opened, class_=class_, regions=regions, limits=limits)
    return assemble(sample.path.read_bytes(), pieces), pieces


def region_text(region: Region) -> str | None:
    """The region in samtools/bcftools 1-based inclusive syntax; None if it lies past the reference.

    An open end is written as the reference length: ``samtools view -M`` does not parse ``chr1:5-``.
    """
    if region.start is None and region.end is None:
        return region.reference_name
    length = dict(REFS)[region.reference_name]
    start = (region.start or 0) + 1
    end = length if region.end is None else min(region.end, length)
    if start > end:
        return None
    return f"{region.reference_name}:{start}-{end}"
