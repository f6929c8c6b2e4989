"""Byte ranges (RFC 9110 section 14; THREAT-MODEL PX-09, PX-10): the parser's policy, and
random ranges over real HTTP compared byte for byte with the fixture file."""

from __future__ import annotations

import email.parser
import email.policy

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.gateway.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    RangeSpec,
    canonical_header,
    if_range_holds,
    multipart_layout,
    parse_range,
    resolve,
)
from tests.gateway.conftest import AUTH, Stack


def parse(value: str, max_ranges: int = 16) -> list[RangeSpec] | None:
    return parse_range(value, max_ranges, 1024)


def test_unknown_units_and_absent_header_are_ignored() -> None:
    assert parse_range(None, 16, 1024) is None
    for value in ("items=0-1", "0-5", "bytes", "bytes 0-5", " bytesx=0-1", "byte=0-1"):
        assert parse(value) is None, value


def test_unit_is_case_insensitive_and_whitespace_around_elements_is_allowed() -> None:
    assert parse("BYTES=0-1 ,\t2-3,, -4") == [RangeSpec(0, 1), RangeSpec(2, 3), RangeSpec(None, 4)]


@pytest.mark.parametrize(
    "value",
    [
        "bytes=",
        "bytes=,",
        "bytes=5-3",
        "bytes=a-b",
        "bytes=1",
        "bytes=--1",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=0x1-2",
        "bytes=\u0661-\u0662",
        "bytes= 1 - 2",
        "bytes=" + "9" * 20 + "-",
    ],
)
def test_invalid_bytes_ranges_are_refused(value: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse(value)


def test_range_count_is_capped() -> None:
    assert len(parse("bytes=" + ",".join(f"{i}-{i}" for i in range(16)))) == 16
    with pytest.raises(RangeNotSatisfiable) as info:
        parse("bytes=" + ",".join(f"{i}-{i}" for i in range(17)))
    assert info.value.code == "too_many_ranges"
    with pytest.raises(RangeNotSatisfiable):
        parse("bytes=" + "," * 100 + "0-1")


def test_resolution_clips_drops_and_coalesces() -> None:
    assert resolve([RangeSpec(0, 9)], 5) == [ByteRange(0, 4)]
    assert resolve([RangeSpec(None, 10)], 5) == [ByteRange(0, 4)]
    assert resolve([RangeSpec(10, None), RangeSpec(1, 1)], 5) == [ByteRange(1, 1)]
    assert resolve([RangeSpec(5, 9), RangeSpec(0, 5)], 100) == [ByteRange(0, 9)]
    assert resolve([RangeSpec(10, 19), RangeSpec(20, 29)], 100) == [ByteRange(10, 29)]  # adjacent
    assert resolve([RangeSpec(50, 59), RangeSpec(0, 9)], 100) == [ByteRange(50, 59), ByteRange(0, 9)]
    for specs, size in (([RangeSpec(None, 0)], 10), ([RangeSpec(10, None)], 10), ([RangeSpec(0, None)], 0)):
        with pytest.raises(RangeNotSatisfiable):
            resolve(specs, size)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 300)), st.integers(0, 300)), min_size=1, max_size=16),
    st.integers(0, 250),
)
def test_property_resolved_ranges_are_disjoint_in_bounds_and_cover_the_request(raw, size) -> None:
    specs = [
        RangeSpec(a, None if b == 300 else b) if a is not None else RangeSpec(None, b)
        for a, b in raw
        if a is None or b >= a or b == 300
    ]
    if not specs:
        return
    wanted: set[int] = set()
    for s in specs:
        if s.first is None:
            wanted |= set(range(max(0, size - (s.last or 0)), size)) if s.last else set()
        else:
            wanted |= set(range(s.first, size if s.last is None else min(s.last + 1, size)))
    try:
        out = resolve(specs, size)
    except RangeNotSatisfiable:
        assert not wanted
        return
    covered = [i for r in out for i in range(r.start, r.end + 1)]
    assert len(covered) == len(set(covered))  # never a byte twice: no amplification
    assert set(covered) == wanted
    assert all(0 <= r.start <= r.end < size for r in out)
    assert parse(canonical_header(specs)) == specs


def test_if_range_rules() -> None:
    assert if_range_holds(None, '"a"', 1.0)
    assert if_range_holds('"a"', '"a"', None)
    assert not if_range_holds('"b"', '"a"', None)
    assert not if_range_holds('W/"a"', '"a"', None)
    assert not if_range_holds('"a"', 'W/"a"', None)
    assert if_range_holds("Sun, 06 Nov 1994 08:49:37 GMT", None, 784111777.0)
    assert not if_range_holds("Sun, 06 Nov 1994 08:49:38 GMT", None, 784111777.0)
    assert not if_range_holds("yesterday", None, 784111777.0)
    assert not if_range_holds("Sun, 06 Nov 1994 08:49:37 GMT", '"a"', None)


def test_multipart_layout_length_is_exact() -> None:
    layout = multipart_layout([ByteRange(0, 0), ByteRange(5, 9)], 10, "application/octet-stream")
    body = b"".join(head + b"x" * rng.length for head, rng in layout.parts) + layout.tail
    assert len(body) == layout.content_length
    assert layout.content_type == f"multipart/byteranges; boundary={layout.boundary}"
    assert multipart_layout([ByteRange(0, 0)], 1, "x").boundary != layout.boundary


# ------------------------------------------------------------------ over HTTP, compared with the file

RANGE = st.one_of(
    st.tuples(st.integers(0, 100_100), st.integers(0, 120_000))
    .filter(lambda t: t[0] <= t[1])
    .map(lambda t: f"{t[0]}-{t[1]}"),
    st.integers(0, 110_000).map(lambda a: f"{a}-"),
    st.integers(1, 120_000).map(lambda n: f"-{n}"),
)


def expected_parts(header: str, data: bytes) -> list[tuple[int, int]] | None:
    specs = parse(header)
    assert specs is not None
    try:
        return [(r.start, r.end) for r in resolve(specs, len(data))]
    except RangeNotSatisfiable:
        return None


def check_response(r: requests.Response, header: str, data: bytes) -> None:
    parts = expected_parts(header, data)
    if parts is None:
        assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(data)}"
        return
    assert r.status_code == 206
    if len(parts) == 1:
        start, end = parts[0]
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
        assert r.content == data[start : end + 1]
        return
    raw = b"Content-Type: " + r.headers["Content-Type"].encode() + b"\r\n\r\n" + r.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    got = [(p["Content-Range"], p.get_payload(decode=True)) for p in message.iter_parts()]
    assert got == [(f"bytes {s}-{e}/{len(data)}", data[s : e + 1]) for s, e in parts]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(RANGE, min_size=1, max_size=4))
def test_px10_random_ranges_match_the_file_byte_for_byte(stack: Stack, ranges: list[str]) -> None:
    header = "bytes=" + ",".join(ranges)
    with requests.Session() as session:
        r = session.get(stack.url + "/data/ds1/small.bin", headers={**AUTH, "Range": header}, timeout=10)
    check_response(r, header, stack.files.small)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(RANGE)
def test_px10_random_single_ranges_through_the_http_store_match_the_file(stack: Stack, rng: str) -> None:
    header = "bytes=" + rng
    r = requests.get(stack.url + "/data/web1/small.bin", headers={**AUTH, "Range": header}, timeout=10)
    check_response(r, header, stack.files.small)


@pytest.mark.parametrize(
    "value",
    [
        "1 Jan 99999999999999999999 0:0 GMT",
        "Thu, 01 Jan 1970 00:00:99999999999999999999 GMT",
        "1 Jan 9555555555 0:0 GMT",
    ],
)
def test_if_range_with_a_date_past_any_calendar_means_send_the_whole_thing(value: str) -> None:
    """RFC 9110 13.1.5: an If-Range that is not a valid date does not hold. Found by the ranges fuzz
    target (fuzz/regressions/ranges): the year overflowed datetime and the gateway answered 500."""
    assert if_range_holds(value, '"etag-1"', 1_700_000_000.0) is False
