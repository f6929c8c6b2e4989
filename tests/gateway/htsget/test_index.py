"""BAI, CSI and TBI readers: the indexes samtools, tabix and bcftools write parse to what those
tools know; truncated, oversized, mis-numbered or otherwise hostile indexes are typed errors,
quickly, whatever the bytes."""

from __future__ import annotations

import gzip
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.gateway.htsget import BgzfError, CorruptData, IndexFormatError, IndexKind, Limits, read_index
from broker.gateway.htsget.bgzf import EOF_BLOCK, compress
from broker.gateway.htsget.index import Index, ReferenceIndex
from tests.gateway.htsget.support import REFS, Sample


def _bgzf(raw: bytes) -> bytes:
    return compress(raw) + EOF_BLOCK


def test_samtools_bai_parses(bam: Sample) -> None:
    index = read_index(bam.indexes["bai"].read_bytes())
    assert index.kind is IndexKind.BAI and (index.min_shift, index.depth) == (14, 5)
    assert len(index.references) == len(REFS) and index.names is None
    assert index.n_no_coor == 300
    chr1 = index.references[0]
    assert chr1.span is not None and chr1.mapped is not None and chr1.mapped > 12_000
    assert chr1.unmapped == 80  # the placed unmapped reads made on chr1
    assert index.references[3].bins == {} and index.references[3].span is None


def test_samtools_csi_parses(bam: Sample) -> None:
    index = read_index(bam.indexes["csi"].read_bytes())
    assert index.kind is IndexKind.CSI and index.min_shift == 14
    assert index.max_position >= 300_000
    assert index.names is None and index.tabix is None and index.n_no_coor == 300


def test_tabix_tbi_parses_with_names_and_columns(vcf: Sample) -> None:
    index = read_index(vcf.indexes["tbi"].read_bytes())
    assert index.kind is IndexKind.TBI
    assert index.names == ("chr1", "chr2", "chr3")
    assert index.tabix is not None and index.tabix.is_vcf
    assert (index.tabix.col_seq, index.tabix.col_beg, index.tabix.col_end, chr(index.tabix.meta)) == (1, 2, 0, "#")


def test_bcftools_csi_for_vcf_carries_the_names(vcf: Sample) -> None:
    index = read_index(vcf.indexes["csi"].read_bytes())
    assert index.kind is IndexKind.CSI and index.names == ("chr1", "chr2", "chr3")
    assert index.tabix is not None and index.tabix.is_vcf


def test_chunks_cover_what_bins_promise(bam: Sample) -> None:
    index = read_index(bam.indexes["bai"].read_bytes())
    chunks = index.chunks(0, 100_000, 110_000)
    assert chunks and all(b < e for b, e in chunks) and chunks == sorted(chunks)
    assert index.chunks(0, 10, 10) == [] and index.chunks(3, 0, 1000) == []
    assert index.chunks(0, 1 << 29, (1 << 29) + 5) == []
    with pytest.raises(ValueError):
        index.chunks(9, 0, 10)


def _reg2bins(beg: int, end: int, min_shift: int, depth: int) -> set[int]:
    """The CSI specification's reg2bins, restated."""
    bins: set[int] = set()
    end -= 1
    offset = 0
    for level in range(depth + 1):
        shift = min_shift + 3 * (depth - level)
        bins.update(range(offset + (beg >> shift), offset + (end >> shift) + 1))
        offset += 1 << (3 * level)
    return bins


@settings(max_examples=300, deadline=None)
@given(
    beg=st.integers(min_value=0, max_value=(1 << 29) - 2),
    length=st.integers(min_value=1, max_value=1 << 22),
    sparse=st.booleans(),
)
def test_overlapping_bins_match_the_specification(beg: int, length: int, sparse: bool) -> None:
    """Both ways of finding bins (enumerate or filter the index's bins) agree with reg2bins."""
    end = min(beg + length, 1 << 29)
    universe = _reg2bins(max(beg - 50_000, 0), min(end + 50_000, 1 << 29), 14, 5) | {0, 1, 9, 73, 585}
    present = set(sorted(universe)[::7]) if sparse else universe
    # One chunk per bin, named after the bin, and no linear index: chunks() reveals the bins it picked.
    ref = ReferenceIndex({b: ((b, b + 1),) for b in present}, {}, (), None, None, None)
    index = Index(IndexKind.BAI, 14, 5, (ref,), None, None, None)
    found = {b for b, _ in index.chunks(0, beg, end)}
    assert found == _reg2bins(beg, end, 14, 5) & present


# ----- hostile indexes ---------------------------------------------------------------------


def _bai(*refs: bytes, tail: bytes = b"") -> bytes:
    return b"BAI\x01" + struct.pack("<i", len(refs)) + b"".join(refs) + tail


def _ref(bins: list[tuple[int, list[tuple[int, int]]]], linear: list[int] | None = None) -> bytes:
    out = struct.pack("<i", len(bins))
    for bin_id, chunks in bins:
        out += struct.pack("<Ii", bin_id, len(chunks))
        out += b"".join(struct.pack("<QQ", b, e) for b, e in chunks)
    linear = linear or []
    return out + struct.pack("<i", len(linear)) + b"".join(struct.pack("<Q", v) for v in linear)


HOSTILE: dict[str, tuple[bytes, str]] = {
    "wrong magic": (b"BAM\x01" + bytes(20), "index_bad_magic"),
    "empty": (b"", "index_bad_magic"),
    "negative n_ref": (b"BAI\x01" + struct.pack("<i", -1), "index_bad_count"),
    "huge n_ref": (b"BAI\x01" + struct.pack("<i", 2**31 - 1), "index_too_large"),
    "n_ref past the data": (b"BAI\x01" + struct.pack("<i", 1000), "index_truncated"),
    "huge n_bin": (_bai(struct.pack("<ii", 2**31 - 1, 0)), "index_too_large"),
    "huge n_chunk": (_bai(struct.pack("<i", 1) + struct.pack("<Ii", 4681, 2**31 - 1)), "index_truncated"),
    "huge n_intv": (_bai(struct.pack("<i", 0) + struct.pack("<i", 2**30)), "index_too_large"),
    "bin beyond the scheme": (_bai(_ref([(40_000, [(0, 1)])])), "index_bad_bin"),
    "bin twice": (_bai(_ref([(4681, [(0, 1)]), (4681, [(2, 3)])])), "index_bad_bin"),
    "chunk backwards": (_bai(_ref([(4681, [(10, 5)])])), "index_bad_chunk"),
    "pseudo-bin with 1 chunk": (_bai(_ref([(37450, [(0, 1)])])), "index_bad_pseudo_bin"),
    "pseudo-bin twice": (_bai(_ref([(37450, [(0, 1), (1, 1)]), (37450, [(0, 1), (1, 1)])])), "index_bad_pseudo_bin"),
    "trailing bytes": (_bai(_ref([]), tail=b"\x00" * 5), "index_trailing_bytes"),
    "tbi wrong names count": (
        _bgzf(b"TBI\x01" + struct.pack("<8i", 2, 2, 1, 2, 0, 35, 0, 5) + b"chr1\x00" + _ref([]) + _ref([])),
        "index_bad_names",
    ),
    "tbi names not terminated": (
        _bgzf(b"TBI\x01" + struct.pack("<8i", 1, 2, 1, 2, 0, 35, 0, 4) + b"chr1" + _ref([])),
        "index_bad_names",
    ),
    "tbi duplicate names": (
        _bgzf(b"TBI\x01" + struct.pack("<8i", 2, 2, 1, 2, 0, 35, 0, 10) + b"chr1\x00chr1\x00" + _ref([]) + _ref([])),
        "index_bad_names",
    ),
    "tbi unknown format": (
        _bgzf(b"TBI\x01" + struct.pack("<8i", 0, 7, 1, 2, 0, 35, 0, 0)),
        "index_bad_tabix",
    ),
    "csi silly depth": (_bgzf(b"CSI\x01" + struct.pack("<4i", 14, 40, 0, 0)), "index_bad_scheme"),
    "csi zero min_shift": (_bgzf(b"CSI\x01" + struct.pack("<4i", 0, 5, 0, 0)), "index_bad_scheme"),
    "csi aux too short": (
        _bgzf(b"CSI\x01" + struct.pack("<3i", 14, 5, 3) + b"abc" + struct.pack("<i", 0)),
        "index_truncated",
    ),
    "gzip that is not an index": (_bgzf(b"hello world"), "index_bad_magic"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_index_is_a_typed_error(name: str) -> None:
    data, code = HOSTILE[name]
    started = time.perf_counter()
    with pytest.raises(IndexFormatError) as err:
        read_index(data)
    assert err.value.code == code, err.value.message
    assert time.perf_counter() - started < 0.1


def test_index_larger_than_the_limit_is_refused_before_parsing(bam: Sample) -> None:
    data = bam.indexes["bai"].read_bytes()
    with pytest.raises(IndexFormatError) as err:
        read_index(data, limits=Limits(max_index_bytes=len(data) - 1))
    assert err.value.code == "index_too_large"
    csi = bam.indexes["csi"].read_bytes()
    with pytest.raises(CorruptData):
        read_index(csi, limits=Limits(max_index_bytes=len(gzip.decompress(csi)) - 1))


def test_zip_bomb_index_is_refused_fast() -> None:
    bomb = compress(b"CSI\x01" + b"\x00" * 50_000_000)
    started = time.perf_counter()
    with pytest.raises(BgzfError) as err:
        read_index(bomb, limits=Limits(max_index_bytes=4 << 20))
    assert err.value.code == "bgzf_too_large"
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("kind", ["bai", "csi"])
def test_every_truncation_of_a_real_index_is_a_typed_error(bam: Sample, kind: str) -> None:
    data = bam.indexes[kind].read_bytes()
    raw = data if kind == "bai" else gzip.decompress(data)
    step = max(1, len(raw) // 400)
    for cut in range(0, len(raw) - 8, step):
        candidate = raw[:cut] if kind == "bai" else _bgzf(raw[:cut])
        with pytest.raises(CorruptData):
            read_index(candidate)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_real_indexes_parse_or_fail_typed(bam: Sample, vcf: Sample, data: st.DataObject) -> None:
    """Random byte changes in real indexes either still parse or raise CorruptData, never anything else."""
    source = data.draw(st.sampled_from([bam.indexes["bai"], bam.indexes["csi"], vcf.indexes["tbi"]]))
    raw = source.read_bytes()
    raw = raw if raw.startswith(b"BAI") else gzip.decompress(raw)
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        where = data.draw(st.integers(min_value=0, max_value=len(mutated) - 1))
        mutated[where] = data.draw(st.integers(min_value=0, max_value=255))
    candidate = bytes(mutated) if raw.startswith(b"BAI") else _bgzf(bytes(mutated))
    try:
        index = read_index(candidate)
    except CorruptData:
        return
    for ref_id in range(len(index.references)):
        index.chunks(ref_id, 0, 1 << 20)
