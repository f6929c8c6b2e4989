"""Ranges of the served stream (new header || stored body) equal slices of the whole served file."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.gateway.c4gh import (
    BytesReader,
    FileReader,
    HeaderPart,
    ServedLayout,
    ServedRangeError,
    StoredPart,
    StoredReadError,
    iter_parts,
    iter_served,
    reencrypt_stored,
    served_parts,
)
from tests.gateway.crypt4gh.conftest import Crypt4GH, Keys, write_served


@st.composite
def layouts_and_ranges(draw: st.DrawFn) -> tuple[bytes, bytes, ServedLayout, int, int]:
    header = draw(st.binary(min_size=16, max_size=300))
    prefix = draw(st.binary(max_size=200))  # the stored header (any length) before the body
    body = draw(st.binary(max_size=600))
    layout = ServedLayout(header_length=len(header), body_offset=len(prefix), body_length=len(body))
    start = draw(st.integers(0, layout.served_size - 1))
    end = draw(st.integers(start, layout.served_size - 1))
    return header, prefix + body, layout, start, end


@settings(max_examples=500, deadline=None)
@given(layouts_and_ranges(), st.integers(1, 64))
def test_parts_give_the_slice_of_the_concatenated_stream(
    case: tuple[bytes, bytes, ServedLayout, int, int], chunk: int
) -> None:
    header, stored, layout, start, end = case
    served = header + stored[layout.body_offset :]
    assert layout.served_size == len(served)
    parts = served_parts(layout, start, end)
    assert 1 <= len(parts) <= 2
    assert sum(p.length for p in parts) == end - start + 1
    assert all(p.length > 0 for p in parts)
    got = b"".join(iter_parts(parts, header, BytesReader(stored), chunk))
    assert got == served[start : end + 1]
    for part in parts:
        if isinstance(part, StoredPart):  # never a stored byte outside the body (THREAT-MODEL PX-11)
            assert layout.body_offset <= part.offset and part.end < layout.body_offset + layout.body_length


def test_range_inside_the_header_alone_reads_nothing_stored() -> None:
    layout = ServedLayout(header_length=124, body_offset=300, body_length=1000)
    assert served_parts(layout, 10, 123) == [HeaderPart(10, 114)]
    assert served_parts(layout, 124, 124) == [StoredPart(300, 1)]
    assert served_parts(layout, 123, 124) == [HeaderPart(123, 1), StoredPart(300, 1)]
    assert served_parts(layout, 0, 1123) == [HeaderPart(0, 124), StoredPart(300, 1000)]


@pytest.mark.parametrize(
    ("start", "end"),
    [(-1, 5), (5, 4), (0, 1124), (1124, 1124), (10**19, 10**19 + 1), (True, 5), (0, 5.0)],
)
def test_ranges_outside_the_served_stream_are_typed_416(start: object, end: object) -> None:
    layout = ServedLayout(header_length=124, body_offset=300, body_length=1000)
    with pytest.raises(ServedRangeError) as info:
        served_parts(layout, start, end)  # type: ignore[arg-type]
    assert info.value.code == "range_not_satisfiable"
    assert info.value.status == 416


def test_streaming_reads_in_chunks_and_loops_on_short_reads() -> None:
    stored = os.urandom(10_000)
    calls: list[int] = []

    class Dribbling(BytesReader):
        def read(self, offset: int, length: int) -> bytes:
            calls.append(length)
            return super().read(offset, min(length, 700))

    layout = ServedLayout(header_length=20, body_offset=100, body_length=9_900)
    chunks = list(iter_served(layout, b"H" * 20, Dribbling(stored), 0, layout.served_size - 1, chunk_size=4096))
    assert b"".join(chunks) == b"H" * 20 + stored[100:]
    assert max(len(c) for c in chunks) <= 4096 and max(calls) <= 4096


def test_a_stored_object_that_shrank_stops_the_stream_with_a_typed_error() -> None:
    layout = ServedLayout(header_length=20, body_offset=100, body_length=9_900)
    stream = iter_served(layout, b"H" * 20, BytesReader(os.urandom(5_000)), 0, layout.served_size - 1, 1024)
    with pytest.raises(StoredReadError) as info:
        for _ in stream:
            pass
    assert info.value.code == "c4gh_stored_truncated"


@pytest.mark.parametrize("chunk", [0, -1, 17 * 1024 * 1024])
def test_chunk_size_is_bounded(chunk: int) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        iter_parts([HeaderPart(0, 1)], b"H", BytesReader(b""), chunk)


def test_random_ranges_of_a_real_reencrypted_file(c4gh: Crypt4GH, keys: Keys, tmp_path: Path) -> None:
    plain = os.urandom(300_000)
    stored = tmp_path / "s.c4gh"
    stored.write_bytes(c4gh.encrypt(plain, [keys.other, keys.node]))
    with FileReader.open(stored) as reader:
        result = reencrypt_stored(reader, keys.node.node_key(), keys.researcher.recipient())
        whole = write_served(
            tmp_path / "served.c4gh", result.layout.parts(0, result.served_size - 1), result.header, reader
        )
        served = whole.read_bytes()
        assert len(served) == result.served_size
        rng = random.Random(4)
        edges = [0, len(result.header) - 1, len(result.header), result.served_size - 1]
        for _ in range(300):
            start = rng.choice([rng.randrange(result.served_size), rng.choice(edges)])
            end = rng.choice([start, rng.randrange(start, result.served_size), result.served_size - 1])
            chunk = rng.choice([997, 65564, 256 * 1024]) if end - start > 5000 else rng.choice([1, 7])
            got = b"".join(iter_served(result.layout, result.header, reader, start, end, chunk))
            assert got == served[start : end + 1], (start, end)
    assert c4gh.decrypt(whole, keys.researcher) == (0, plain)
