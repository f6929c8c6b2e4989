"""Random regions against a brute-force oracle: decode every record of the original once, select
by overlap in plain Python, and require the answer (decoded by samtools/bcftools from stdin) to
hold exactly those records, in file order, each once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.gateway.htsget import Region
from tests.gateway.htsget.support import REFS, Sample, Tools, answer, lines, run

_CIGAR = re.compile(r"(\d+)([MIDNSHP=X])")


@dataclass(frozen=True)
class Placed:
    line: str
    ref: str
    start: int
    end: int


@cache
def bam_oracle(samtools: str, path: Path) -> tuple[Placed, ...]:
    """Every record with its 0-based half-open span as htslib computes it."""
    out = []
    for line in lines(run(samtools, "view", path)):
        fields = line.split("\t")
        flag, ref, pos, cigar = int(fields[1]), fields[2], int(fields[3]) - 1, fields[5]
        length = 0 if flag & 4 else sum(int(n) for n, op in _CIGAR.findall(cigar) if op in "MDN=X")
        out.append(Placed(line, ref, pos, pos + max(length, 1)))
    return tuple(out)


@cache
def vcf_oracle(bcftools: str, path: Path) -> tuple[Placed, ...]:
    """Every record with its span: END when given, else the length of REF (as bcftools)."""
    out = []
    for line in lines(run(bcftools, "view", "--no-version", "-H", path)):
        fields = line.split("\t")
        pos = int(fields[1]) - 1
        ends = [int(v) for k, _, v in (e.partition("=") for e in fields[7].split(";")) if k == "END"]
        out.append(Placed(line, fields[0], pos, ends[0] if ends else pos + len(fields[3])))
    return tuple(out)


def overlapping(records: tuple[Placed, ...], regions: list[Region]) -> list[str]:
    def hit(record: Placed, region: Region) -> bool:
        if region.reference_name == "*":
            return record.ref == "*"
        start = region.start or 0
        end = region.end if region.end is not None else 1 << 62
        # An empty range (start == end, which GET allows) overlaps nothing.
        return record.ref == region.reference_name and record.start < end and record.end > start and start < end

    return [r.line for r in records if any(hit(r, region) for region in regions)]


@st.composite
def regions(draw: st.DrawFn, unplaced: bool) -> list[Region]:
    names = [name for name, _ in REFS] + (["*"] if unplaced else [])
    out = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        name = draw(st.sampled_from(names))
        if name == "*":
            out.append(Region(name))
            continue
        start = draw(st.none() | st.integers(min_value=0, max_value=320_000))
        end = draw(st.none() | st.integers(min_value=start or 0, max_value=(start or 0) + 60_000))
        out.append(Region(name, start, end))
    return out


def _check(got: list[str], expected: list[str], everything: list[str]) -> None:
    assert set(expected) <= set(got), f"{len(set(expected) - set(got))} records missing"
    order = {line: i for i, line in enumerate(everything)}
    positions = [order[line] for line in got]
    assert positions == sorted(set(positions)), "records must come once each, in file order"
    assert got == expected, f"{len(got) - len(expected)} extra records"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_bam_regions_match_the_oracle(
    hts_tools: Tools, bam: Sample, bam_small_blocks: Sample, data: st.DataObject
) -> None:
    sample = data.draw(st.sampled_from([bam, bam_small_blocks]))
    index = data.draw(st.sampled_from(["bai", "csi"]))
    wanted = data.draw(regions(unplaced=True))
    assembled, _ = answer(sample, index, regions=wanted)
    got = lines(run(hts_tools.samtools, "view", "-", stdin=assembled))
    oracle = bam_oracle(hts_tools.samtools, sample.path)
    _check(got, overlapping(oracle, wanted), [r.line for r in oracle])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_vcf_regions_match_the_oracle(
    hts_tools: Tools, vcf: Sample, vcf_small_blocks: Sample, data: st.DataObject
) -> None:
    sample = data.draw(st.sampled_from([vcf, vcf_small_blocks]))
    index = data.draw(st.sampled_from(["tbi", "csi"]))
    wanted = data.draw(regions(unplaced=False))
    assembled, _ = answer(sample, index, regions=wanted)
    got = lines(run(hts_tools.bcftools, "view", "--no-version", "-H", "-", stdin=assembled))
    oracle = vcf_oracle(hts_tools.bcftools, sample.path)
    _check(got, overlapping(oracle, wanted), [r.line for r in oracle])
