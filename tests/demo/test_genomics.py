"""The demo's synthetic files are real genomics files: htslib's tools accept them and find records by region.

Every expectation is computed from the file itself read without its index (samtools/bcftools
streaming the whole file), then compared with what the tools return through our .bai/.tbi,
so a wrong bin, chunk or linear-index entry shows up as a missing or extra record.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from broker.demo.genomics import write_demo_files
from broker.gateway.htsget.index import IndexKind, read_index
from tests.support.parts import require_binary

REGIONS = [
    ("chr1", 1, 500),
    ("chr1", 16_300, 16_700),  # across the first 16 kb window boundary
    ("chr1", 20_001, 40_000),
    ("chr1", 119_500, 120_000),
    ("chr2", 10_001, 11_000),
    ("chr2", 1, 70_000),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genomics")
    write_demo_files(root, "VCF", "BAM")
    return root


def run(*args: str) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def overlapping(rows: list[tuple[str, int, int, str]], contig: str, first: int, last: int) -> list[str]:
    """Names of rows (contig, 1-based start, length, name) overlapping [first, last] (1-based, inclusive)."""
    return [name for c, pos, length, name in rows if c == contig and pos <= last and pos + length - 1 >= first]


def test_the_bam_passes_quickcheck_and_its_bai_finds_every_read_of_a_region(files: Path) -> None:
    samtools = require_binary("samtools", "the demo's BAM is checked with samtools")
    bam = str(files / "BAM" / "demo.bam")
    run(samtools, "quickcheck", "-v", bam)
    reads = []
    for line in run(samtools, "view", bam).splitlines():
        cols = line.split("\t")
        reads.append((cols[2], int(cols[3]), len(cols[9]), cols[0]))
    assert len(reads) > 500
    for contig, first, last in REGIONS:
        found = run(samtools, "view", bam, f"{contig}:{first}-{last}").splitlines()
        expected = overlapping(reads, contig, first, last)
        assert expected, (contig, first, last)
        assert [line.split("\t")[0] for line in found] == expected, (contig, first, last)
    stats = [line.split("\t") for line in run(samtools, "idxstats", bam).splitlines()]
    assert {row[0]: int(row[2]) for row in stats if row[0] != "*"} == {
        "chr1": sum(1 for r in reads if r[0] == "chr1"),
        "chr2": sum(1 for r in reads if r[0] == "chr2"),
    }


def test_the_vcf_is_read_by_bcftools_and_its_tbi_finds_every_variant_of_a_region(files: Path) -> None:
    bcftools = require_binary("bcftools", "the demo's VCF is checked with bcftools")
    tabix = require_binary("tabix", "the demo's .tbi is checked with tabix")
    vcf = str(files / "VCF" / "demo.vcf.gz")
    variants = []
    for line in run(bcftools, "view", "-H", vcf).splitlines():
        cols = line.split("\t")
        variants.append((cols[0], int(cols[1]), len(cols[3]), cols[2]))
    assert len(variants) > 300
    assert run(tabix, "-l", vcf).split() == ["chr1", "chr2"]
    for contig, first, last in REGIONS:
        region = f"{contig}:{first}-{last}"
        expected = overlapping(variants, contig, first, last)
        assert expected, region
        assert [line.split("\t")[2] for line in run(bcftools, "view", "-H", "-r", region, vcf).splitlines()] == expected
        assert [line.split("\t")[2] for line in run(tabix, vcf, region).splitlines()] == expected


def test_the_indexes_pass_the_gateways_strict_readers(files: Path) -> None:
    bai = read_index((files / "BAM" / "demo.bam.bai").read_bytes())
    assert bai.kind is IndexKind.BAI and [r.mapped for r in bai.references] == [480, 280]
    tbi = read_index((files / "VCF" / "demo.vcf.gz.tbi").read_bytes())
    assert tbi.kind is IndexKind.TBI and tbi.names == ("chr1", "chr2")


def test_the_same_seed_writes_the_same_bytes_and_the_checksums_list_them(files: Path, tmp_path: Path) -> None:
    again = write_demo_files(tmp_path, "VCF", "BAM")
    for name, sha in again.checksums.items():
        assert (tmp_path / name).read_bytes() == (files / name).read_bytes()
        assert f"{sha}  {name}" in (files / "SHA256SUMS").read_text()
