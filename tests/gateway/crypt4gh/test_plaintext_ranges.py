"""htsget on encrypted files: a plaintext byte range served as whole segments plus an edit list, judged by
the real ``crypt4gh decrypt``."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from broker.gateway.c4gh import (
    CIPHER_SEGMENT_SIZE,
    SEGMENT_SIZE,
    BytesReader,
    FileReader,
    ServedRangeError,
    StoredHeaderError,
    open_header,
    parse_header,
    plaintext_range_to_served,
    plaintext_size,
    read_header,
)
from tests.gateway.crypt4gh.conftest import Crypt4GH, Keys, write_served

PLAIN = os.urandom(3 * SEGMENT_SIZE + 4321)


@pytest.fixture(scope="module")
def stored_file(c4gh: Crypt4GH, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plain-ranges") / "stored.c4gh"
    path.write_bytes(c4gh.encrypt(PLAIN, [keys.other, keys.node]))
    return path


def test_plaintext_size_from_the_body_length() -> None:
    assert plaintext_size(0) == 0
    assert plaintext_size(29) == 1
    assert plaintext_size(CIPHER_SEGMENT_SIZE) == SEGMENT_SIZE
    assert plaintext_size(CIPHER_SEGMENT_SIZE + 29) == SEGMENT_SIZE + 1
    for bad in (1, 28, CIPHER_SEGMENT_SIZE + 28, -1):
        with pytest.raises(StoredHeaderError) as info:
            plaintext_size(bad)
        assert info.value.code == "c4gh_bad_body_length"


def test_plaintext_ranges_decrypt_to_exactly_the_slice(
    c4gh: Crypt4GH, keys: Keys, stored_file: Path, tmp_path: Path
) -> None:
    total = len(PLAIN)
    seg = SEGMENT_SIZE
    cases = [
        (0, 0),
        (0, total - 1),
        (0, seg - 1),
        (seg - 1, seg),
        (seg, seg),
        (seg, 2 * seg - 1),
        (100, 2 * seg + 5),
        (total - 1, total - 1),
        (3 * seg, total + 10**9),  # the end is clipped to the last plaintext byte
    ]
    rng = random.Random(7)
    for _ in range(5):
        start = rng.randrange(total)
        cases.append((start, rng.randrange(start, total)))
    node, researcher = keys.node.node_key(), keys.researcher.recipient()
    jobs, expected = [], []
    with FileReader.open(stored_file) as reader:
        stored = read_header(reader)
        for index, (start, end) in enumerate(cases):
            sliced = plaintext_range_to_served(stored, node, researcher, start, end)
            end = min(end, total - 1)
            assert (sliced.plain_start, sliced.plain_end) == (start, end)
            # Only the segments holding the range are served.
            segments = end // seg - start // seg + 1
            assert sliced.stored.offset == stored.body_offset + (start // seg) * CIPHER_SEGMENT_SIZE
            assert segments * CIPHER_SEGMENT_SIZE - CIPHER_SEGMENT_SIZE < sliced.stored.length
            assert sliced.stored.length <= segments * CIPHER_SEGMENT_SIZE
            path = write_served(tmp_path / f"slice{index}.c4gh", sliced.parts, sliced.header, reader)
            assert path.stat().st_size == sliced.served_size
            jobs.append((path, keys.researcher))
            expected.append(PLAIN[start : end + 1])
    for (start, end), (code, out), want in zip(cases, c4gh.decrypt_many(jobs), expected, strict=True):
        assert code == 0, (start, end)
        assert out == want, (start, end)


def test_the_sliced_header_is_for_the_researcher_and_carries_the_edit_list(
    c4gh: Crypt4GH, keys: Keys, stored_file: Path, tmp_path: Path
) -> None:
    with FileReader.open(stored_file) as reader:
        stored = read_header(reader)
        sliced = plaintext_range_to_served(stored, keys.node.node_key(), keys.researcher.recipient(), 70_000, 70_009)
        path = write_served(tmp_path / "s.c4gh", sliced.parts, sliced.header, reader)
    header = parse_header(sliced.header)
    assert len(header.packets) == 2  # the node's session key (the other recipient's dropped) and the edit list
    with pytest.raises(StoredHeaderError) as info:
        open_header(header, keys.node.node_key())
    assert info.value.code == "c4gh_not_for_this_node"
    (ok, out), (third, _) = c4gh.decrypt_many([(path, keys.researcher), (path, keys.third)])
    assert (ok, out) == (0, PLAIN[70_000:70_010])
    assert third != 0


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (10, 9), (len(PLAIN), len(PLAIN) + 5), (True, 3)])
def test_plaintext_ranges_outside_the_file_are_typed_416(keys: Keys, stored_file: Path, start: int, end: int) -> None:
    with FileReader.open(stored_file) as reader:
        stored = read_header(reader)
    with pytest.raises(ServedRangeError) as info:
        plaintext_range_to_served(stored, keys.node.node_key(), keys.researcher.recipient(), start, end)
    assert info.value.code == "range_not_satisfiable"


def test_an_empty_file_has_no_plaintext_range(c4gh: Crypt4GH, keys: Keys) -> None:
    stored = read_header(BytesReader(c4gh.encrypt(b"", [keys.node])))
    with pytest.raises(ServedRangeError):
        plaintext_range_to_served(stored, keys.node.node_key(), keys.researcher.recipient(), 0, 0)


def test_a_file_with_an_edit_list_is_not_sliced_again(c4gh: Crypt4GH, keys: Keys) -> None:
    rearranged = c4gh.rearrange(c4gh.encrypt(PLAIN, [keys.node]), keys.node, 10, 5000)
    stored = read_header(BytesReader(rearranged))
    with pytest.raises(StoredHeaderError) as info:
        plaintext_range_to_served(stored, keys.node.node_key(), keys.researcher.recipient(), 0, 10)
    assert info.value.code == "c4gh_edit_list_present"


def test_a_truncated_body_is_reported_not_served(c4gh: Crypt4GH, keys: Keys) -> None:
    data = c4gh.encrypt(PLAIN, [keys.node])
    header_length = parse_header(data).length
    cut = data[: header_length + CIPHER_SEGMENT_SIZE + 10]  # 10 bytes of a segment: not even its nonce and MAC
    stored = read_header(BytesReader(cut))
    with pytest.raises(StoredHeaderError) as info:
        plaintext_range_to_served(stored, keys.node.node_key(), keys.researcher.recipient(), 0, 10)
    assert info.value.code == "c4gh_bad_body_length"
