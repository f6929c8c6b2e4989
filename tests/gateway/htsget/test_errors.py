"""Every refusal is typed: request errors carry the htsget error name and status the
specification gives (InvalidInput, InvalidRange, NotFound, UnsupportedFormat); broken stored
data (BAM/VCF headers, indexes that lie about the file) is CorruptData with a code."""

from __future__ import annotations

import contextlib
import functools
import gzip
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.gateway.htsget import (
    BgzfError,
    BytesReader,
    CorruptData,
    FileReader,
    Format,
    HeaderFormatError,
    HtsgetError,
    IndexFormatError,
    InvalidInput,
    InvalidRange,
    Limits,
    NotFound,
    Region,
    UnsupportedFormat,
    check_regions,
    open_indexed,
    parse_format,
    plan,
    plan_request,
    read_index,
)
from broker.gateway.htsget.bgzf import EOF_BLOCK, compress
from broker.gateway.htsget.headers import read_bam_header, read_vcf_header
from tests.gateway.htsget.support import REFS, Sample

# ----- request errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "endpoint", "expected"),
    [
        (None, "reads", Format.BAM),
        ("bam", "reads", Format.BAM),
        (None, "variants", Format.VCF),
        ("VCF", "variants", Format.VCF),
    ],
)
def test_format_defaults_and_case(value: str | None, endpoint: str, expected: Format) -> None:
    assert parse_format(value, endpoint) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "endpoint"), [("CRAM", "reads"), ("BCF", "variants"), ("VCF", "reads"), ("", "reads")]
)
def test_unserved_format_is_unsupported_format(value: str, endpoint: str) -> None:
    with pytest.raises(UnsupportedFormat) as err:
        parse_format(value, endpoint)  # type: ignore[arg-type]
    assert (err.value.status, err.value.htsget_error) == (400, "UnsupportedFormat")
    assert err.value.body() == {"htsget": {"error": "UnsupportedFormat", "message": err.value.message}}


@pytest.mark.parametrize(
    ("regions", "error", "code"),
    [
        ([], InvalidInput, "regions_empty"),
        ([Region("")], InvalidInput, "bad_reference_name"),
        ([Region("chr1", -1, 5)], InvalidInput, "bad_position"),
        ([Region("chr1", 0, 2**63)], InvalidInput, "bad_position"),
        ([Region("chr1", True, 5)], InvalidInput, "bad_position"),
        ([Region("chr1", "5", 6)], InvalidInput, "bad_position"),  # type: ignore[arg-type]
        ([Region("*", 0, 5)], InvalidInput, "unplaced_with_range"),
        ([Region("chr1", 10, 5)], InvalidRange, "start_after_end"),
        ([Region("chr1", 1, 2)] * 2000, InvalidInput, "too_many_regions"),
    ],
)
def test_malformed_regions_get_the_specified_error(regions: list[Region], error: type[HtsgetError], code: str) -> None:
    with pytest.raises(error) as err:
        check_regions(regions)
    assert err.value.code == code and err.value.status == 400


def test_post_rule_refuses_empty_ranges_get_allows_them() -> None:
    check_regions([Region("chr1", 5, 5)])
    with pytest.raises(InvalidRange):
        check_regions([Region("chr1", 5, 5)], allow_empty=False)


def test_unknown_reference_is_not_found(bam: Sample, vcf: Sample) -> None:
    for sample, index in ((bam, "bai"), (vcf, "tbi")):
        with FileReader(sample.path) as reader:
            opened = open_indexed(reader, sample.indexes[index].read_bytes(), sample.format)
            with pytest.raises(NotFound) as err:
                plan(reader, opened, regions=[Region("chrX", 0, 10)])
            assert (err.value.status, err.value.htsget_error) == (404, "NotFound")
            assert "chrX" in err.value.message


def test_unplaced_reads_do_not_exist_for_variants(vcf: Sample) -> None:
    with FileReader(vcf.path) as reader, pytest.raises(NotFound):
        plan_request(reader, vcf.indexes["tbi"].read_bytes(), Format.VCF, regions=[Region("*")])


def test_class_must_be_header_and_alone(bam: Sample) -> None:
    with FileReader(bam.path) as reader:
        opened = open_indexed(reader, bam.indexes["bai"].read_bytes(), Format.BAM)
        with pytest.raises(InvalidInput) as err:
            plan(reader, opened, class_="body")
        assert err.value.code == "bad_class"
        with pytest.raises(InvalidInput) as err:
            plan(reader, opened, class_="header", regions=[Region("chr1")])
        assert err.value.code == "class_with_regions"


def test_scattered_regions_beyond_the_inline_budget_are_refused(bam: Sample) -> None:
    scattered = [Region("chr1", start, start + 10) for start in range(1_000, 300_000, 3_000)]
    with FileReader(bam.path) as reader:
        opened = open_indexed(reader, bam.indexes["bai"].read_bytes(), Format.BAM)
        assert plan(reader, opened, regions=scattered)
        with pytest.raises(InvalidInput) as err:
            plan(reader, opened, regions=scattered, limits=Limits(max_inline_bytes=20_000))
    assert err.value.code == "answer_too_large"


def test_error_messages_quote_hostile_names_briefly(bam: Sample) -> None:
    with FileReader(bam.path) as reader, pytest.raises(NotFound) as err:
        plan_request(reader, bam.indexes["bai"].read_bytes(), Format.BAM, regions=[Region("x" * 5000)])
    assert len(err.value.message) < 200


# ----- broken stored data -----------------------------------------------------------------


def bam_bytes(payload: bytes) -> bytes:
    return compress(payload) + EOF_BLOCK


def bam_header(refs: list[tuple[bytes, int]], text: bytes = b"@HD\tVN:1.6\n") -> bytes:
    out = b"BAM\x01" + struct.pack("<i", len(text)) + text + struct.pack("<i", len(refs))
    for name, length in refs:
        out += struct.pack("<i", len(name)) + name + struct.pack("<i", length)
    return out


HOSTILE_BAM: dict[str, tuple[bytes, type[CorruptData], str]] = {
    "not bgzf": (b"BAM\x01" + bytes(100), BgzfError, "bgzf_bad_magic"),
    "wrong magic": (bam_bytes(b"BAI\x01" + bytes(20)), HeaderFormatError, "bam_bad_magic"),
    "negative l_text": (bam_bytes(b"BAM\x01" + struct.pack("<i", -5)), HeaderFormatError, "bam_bad_header"),
    "huge l_text": (bam_bytes(b"BAM\x01" + struct.pack("<i", 2**31 - 1)), HeaderFormatError, "header_too_large"),
    "truncated text": (bam_bytes(b"BAM\x01" + struct.pack("<i", 1000) + b"@HD"), HeaderFormatError, "header_truncated"),
    "huge n_ref": (bam_bytes(b"BAM\x01" + struct.pack("<ii", 0, 2**31 - 1)), HeaderFormatError, "bam_bad_header"),
    "n_ref past the data": (bam_bytes(b"BAM\x01" + struct.pack("<ii", 0, 1000)), HeaderFormatError, "header_truncated"),
    "empty name": (bam_bytes(bam_header([(b"\x00", 5)])), HeaderFormatError, "bam_bad_header"),
    "name without NUL": (bam_bytes(bam_header([(b"chr1", 5)])), HeaderFormatError, "bam_bad_header"),
    "name with NUL inside": (bam_bytes(bam_header([(b"ch\x00r1\x00", 5)])), HeaderFormatError, "bam_bad_header"),
    "name not UTF-8": (bam_bytes(bam_header([(b"\xff\xfe\x00", 5)])), HeaderFormatError, "bam_bad_header"),
    "negative length": (bam_bytes(bam_header([(b"chr1\x00", -5)])), HeaderFormatError, "bam_bad_header"),
    "duplicate names": (
        bam_bytes(bam_header([(b"chr1\x00", 5), (b"chr1\x00", 6)])),
        HeaderFormatError,
        "bam_bad_header",
    ),
    "huge l_name": (
        bam_bytes(b"BAM\x01" + struct.pack("<iii", 0, 1, 2**31 - 1)),
        HeaderFormatError,
        "bam_bad_header",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BAM))
def test_hostile_bam_header_is_a_typed_error(name: str) -> None:
    data, error, code = HOSTILE_BAM[name]
    started = time.perf_counter()
    with pytest.raises(error) as err:
        read_bam_header(BytesReader(data))
    assert err.value.code == code
    assert time.perf_counter() - started < 0.2


def test_good_synthetic_bam_header_parses() -> None:
    data = bam_bytes(bam_header([(b"chr1\x00", 5), (b"chrM\x00", 16_569)]))
    header = read_bam_header(BytesReader(data))
    assert [(r.name, r.length) for r in header.references] == [("chr1", 5), ("chrM", 16_569)]
    # The header fills its one block exactly, so it ends at the start of the next (the EOF block).
    assert header.end == (len(data) - len(EOF_BLOCK)) << 16 and header.tail == b""


def vcf_bytes(text: str, block: int = 0xFF00) -> bytes:
    return compress(text.encode(), block_data=block) + EOF_BLOCK


GOOD_VCF = (
    "##fileformat=VCFv4.2\n"
    '##contig=<desc="a, b>c, \\"d\\"",ID=chr1,length=100>\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)

HOSTILE_VCF: dict[str, tuple[str, str]] = {
    "no fileformat": ("#CHROM\tPOS\n", "vcf_bad_header"),
    "no #CHROM": ("##fileformat=VCFv4.2\n##contig=<ID=chr1>\n", "vcf_bad_header"),
    "no final newline": ("##fileformat=VCFv4.2\n#CHROM", "vcf_bad_header"),
    "contig without ID": ("##fileformat=VCFv4.2\n##contig=<length=5>\n#CHROM\n", "vcf_bad_header"),
    "contig not closed": ("##fileformat=VCFv4.2\n##contig=<ID=chr1\n#CHROM\n", "vcf_bad_header"),
    "contig bad length": ("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=-5>\n#CHROM\n", "vcf_bad_header"),
    "contig unterminated quote": ('##fileformat=VCFv4.2\n##contig=<ID=chr1,d="x>\n#CHROM\n', "vcf_bad_header"),
    "contig twice": ("##fileformat=VCFv4.2\n##contig=<ID=a>\n##contig=<ID=a>\n#CHROM\n", "vcf_bad_header"),
    "empty file": ("", "vcf_bad_header"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_VCF))
def test_hostile_vcf_header_is_a_typed_error(name: str) -> None:
    text, code = HOSTILE_VCF[name]
    with pytest.raises(HeaderFormatError) as err:
        read_vcf_header(BytesReader(vcf_bytes(text)))
    assert err.value.code == code


def test_vcf_header_over_the_limit_is_refused() -> None:
    text = "##fileformat=VCFv4.2\n" + "##x=" + "y" * 200_000 + "\n#CHROM\n"
    with pytest.raises(HeaderFormatError) as err:
        read_vcf_header(BytesReader(vcf_bytes(text, block=1000)), limits=Limits(max_header_bytes=100_000))
    assert err.value.code == "header_too_large"


def test_vcf_header_in_tiny_blocks_parses_with_quoted_contig_fields() -> None:
    header = read_vcf_header(BytesReader(vcf_bytes(GOOD_VCF + "chr1\t5\t.\tA\tC\t.\t.\t.\n", block=7)))
    assert [(r.name, r.length) for r in header.references] == [("chr1", 100)]
    assert header.size == len(GOOD_VCF.encode())


def test_index_of_the_wrong_kind_or_file_is_refused(bam: Sample, vcf: Sample) -> None:
    with FileReader(bam.path) as reader:
        with pytest.raises(IndexFormatError) as err:
            open_indexed(reader, vcf.indexes["tbi"].read_bytes(), Format.BAM)
        assert err.value.code == "index_wrong_kind"
    with FileReader(vcf.path) as reader:
        with pytest.raises(IndexFormatError) as err:
            open_indexed(reader, bam.indexes["bai"].read_bytes(), Format.VCF)
        assert err.value.code == "index_wrong_kind"
        with pytest.raises(IndexFormatError) as err:
            open_indexed(reader, bam.indexes["csi"].read_bytes(), Format.VCF)
        assert err.value.code == "index_mismatch"
    lonely = b"BAI\x01" + struct.pack("<iii", 1, 0, 0)
    with FileReader(bam.path) as reader, pytest.raises(IndexFormatError) as err:
        open_indexed(reader, lonely, Format.BAM)
    assert err.value.code == "index_mismatch"


def _bai_with_chunk(begin: int, end: int) -> bytes:
    empty = struct.pack("<ii", 0, 0)
    chr1 = struct.pack("<iIiQQi", 1, 4681, 1, begin, end, 0)
    return b"BAI\x01" + struct.pack("<i", 4) + chr1 + empty * 3


@pytest.mark.parametrize(
    ("chunk", "code"),
    [
        (lambda size, block: (block << 16, (size + 10) << 16), "index_past_end"),
        (lambda size, block: ((block << 16) | 65_000, (block << 16) | 65_001), "index_bad_offset"),
        (lambda size, block: ((block + 3) << 16, (block + 3) << 16 | 5), "bgzf_bad_magic"),
    ],
)
def test_index_lying_about_the_file_is_a_typed_error(bam_small_blocks: Sample, chunk: object, code: str) -> None:
    assert callable(chunk)
    data = bam_small_blocks.path.read_bytes()
    reader = BytesReader(data)
    header_block = open_indexed(reader, bam_small_blocks.indexes["bai"].read_bytes(), Format.BAM).header.end >> 16
    begin, end = chunk(len(data), header_block)
    opened = open_indexed(reader, _bai_with_chunk(begin, end), Format.BAM)
    with pytest.raises(CorruptData) as err:
        plan(reader, opened, regions=[Region("chr1", 0, 1000)], limits=Limits(max_scan_bytes=0))
    assert err.value.code == code


def test_truncated_data_file_is_a_typed_error(bam: Sample) -> None:
    """A cut file gives CorruptData: at the latest because its EOF block is missing."""
    data = bam.path.read_bytes()
    index = read_index(bam.indexes["bai"].read_bytes())
    for cut in [10, 100, 300, *range(1_000, len(data), len(data) // 60), len(data) - 30, len(data) - 1]:
        reader = BytesReader(data[:cut])
        with pytest.raises(CorruptData):
            opened = open_indexed(reader, index, Format.BAM)
            plan(reader, opened, regions=[Region("chr1", 100_000, 110_000), Region("chr2"), Region("*")])


def test_file_without_eof_block_is_refused(vcf: Sample) -> None:
    data = vcf.path.read_bytes()[: -len(EOF_BLOCK)]
    with pytest.raises(CorruptData) as err:
        open_indexed(BytesReader(data), vcf.indexes["tbi"].read_bytes(), Format.VCF)
    assert err.value.code == "data_no_eof"


@functools.cache
def _inflated(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_record_contents_never_escape_untyped(bam: Sample, vcf: Sample, data: st.DataObject) -> None:
    """Records garbled *inside* valid BGZF blocks (so CRCs pass) reach the record scans: planning
    either succeeds or raises CorruptData, and never reads past its budget."""
    sample = data.draw(st.sampled_from([bam, vcf]))
    raw = bytearray(_inflated(sample.path))
    for _ in range(data.draw(st.integers(min_value=1, max_value=20))):
        where = data.draw(st.integers(min_value=len(raw) // 50, max_value=len(raw) - 1))
        raw[where] = data.draw(st.integers(min_value=0, max_value=255))
    reader = BytesReader(compress(bytes(raw), block_data=4000) + EOF_BLOCK)
    index = sample.indexes["csi"].read_bytes()
    names = [name for name, _ in REFS]
    wanted = [Region(data.draw(st.sampled_from(names)), data.draw(st.integers(0, 300_000)), None) for _ in range(2)]
    with contextlib.suppress(CorruptData):
        opened = open_indexed(reader, index, sample.format)
        plan(reader, opened, regions=wanted, limits=Limits(max_scan_bytes=1 << 20))
