"""Files encrypted by the real ``crypt4gh encrypt`` for the node, re-encrypted by the core, decrypt with the
real ``crypt4gh decrypt`` for the researcher, byte for byte; and for nobody else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broker.gateway.c4gh import (
    FileReader,
    HeaderPart,
    StoredHeaderError,
    StoredPart,
    open_header,
    read_header,
    reencrypt_header,
    reencrypt_stored,
)
from tests.gateway.crypt4gh.conftest import Crypt4GH, Keys, write_served

SEG = 65536
PLAINTEXTS = {
    "empty": b"",
    "one-byte": b"\x00",
    "segment-minus-1": os.urandom(SEG - 1),
    "one-segment": os.urandom(SEG),
    "segment-plus-1": os.urandom(SEG + 1),
    "two-segments": os.urandom(2 * SEG),
    "3MiB-and-a-bit": os.urandom(3 * 1024 * 1024 + 123),
}


def _serve_whole(stored_path: Path, out: Path, keys: Keys) -> tuple[bytes, int]:
    """Re-encrypt the stored file for the researcher and write the whole served stream; (header, body offset)."""
    with FileReader.open(stored_path) as reader:
        result = reencrypt_stored(reader, keys.node.node_key(), keys.researcher.recipient())
        write_served(out, result.layout.parts(0, result.served_size - 1), result.header, reader)
    return result.header, result.body_offset


def test_every_size_decrypts_to_the_plaintext_for_the_researcher(c4gh: Crypt4GH, keys: Keys, tmp_path: Path) -> None:
    jobs = []
    for name, plain in PLAINTEXTS.items():
        stored = tmp_path / f"{name}.c4gh"
        stored.write_bytes(c4gh.encrypt(plain, [keys.node]))
        served = tmp_path / f"{name}.served.c4gh"
        header, body_offset = _serve_whole(stored, served, keys)
        # Only the header changes: the body is the stored body, byte for byte.
        assert served.read_bytes()[len(header) :] == stored.read_bytes()[body_offset:]
        jobs.append((served, keys.researcher, keys.node))
    results = c4gh.decrypt_checked(jobs)  # --sender_pk node.pub: the node wrote the new header
    for (name, plain), (code, out) in zip(PLAINTEXTS.items(), results, strict=True):
        assert code == 0, name
        assert out == plain, name


def test_the_served_file_does_not_decrypt_with_the_node_or_a_third_key(
    c4gh: Crypt4GH, keys: Keys, tmp_path: Path
) -> None:
    plain = PLAINTEXTS["segment-plus-1"]
    stored = tmp_path / "s.c4gh"
    stored.write_bytes(c4gh.encrypt(plain, [keys.node]))
    served = tmp_path / "served.c4gh"
    _serve_whole(stored, served, keys)
    (node_code, node_out), (third_code, third_out), (ok_code, ok_out) = c4gh.decrypt_many(
        [(served, keys.node), (served, keys.third), (served, keys.researcher)]
    )
    assert (ok_code, ok_out) == (0, plain)  # the same file does open for the researcher
    assert node_code != 0 and plain not in node_out and node_out[:64] != plain[:64]
    assert third_code != 0 and plain not in third_out and third_out[:64] != plain[:64]


def test_two_recipient_file_is_trimmed_to_the_researcher_alone(c4gh: Crypt4GH, keys: Keys, tmp_path: Path) -> None:
    plain = PLAINTEXTS["two-segments"]
    stored = tmp_path / "two.c4gh"
    stored.write_bytes(c4gh.encrypt(plain, [keys.other, keys.node]))
    with FileReader.open(stored) as reader:
        parsed = read_header(reader)
    assert len(parsed.header.packets) == 2
    opened = open_header(parsed.header, keys.node.node_key())
    assert (opened.session_keys, opened.dropped, opened.edit_list) == (1, 1, None)

    served = tmp_path / "served.c4gh"
    header, _ = _serve_whole(stored, served, keys)
    assert int.from_bytes(header[12:16], "little") == 1  # one packet: the other recipient's is gone
    (ok_code, ok_out), (other_code, other_out) = c4gh.decrypt_many([(served, keys.researcher), (served, keys.other)])
    assert (ok_code, ok_out) == (0, plain)
    assert other_code != 0 and other_out[:64] != plain[:64]


def test_a_file_for_another_node_is_refused_with_a_typed_error(c4gh: Crypt4GH, keys: Keys, tmp_path: Path) -> None:
    stored = tmp_path / "elsewhere.c4gh"
    stored.write_bytes(c4gh.encrypt(b"not for you", [keys.other, keys.third]))
    with FileReader.open(stored) as reader, pytest.raises(StoredHeaderError) as info:
        reencrypt_stored(reader, keys.node.node_key(), keys.researcher.recipient())
    assert info.value.code == "c4gh_not_for_this_node"
    assert "2 header packets" in info.value.message
    assert info.value.status == 502


def test_a_stored_edit_list_is_kept_so_the_researcher_sees_the_same_slice(
    c4gh: Crypt4GH, keys: Keys, tmp_path: Path
) -> None:
    plain = PLAINTEXTS["3MiB-and-a-bit"]
    start, stop = 70_000, 200_001
    # crypt4gh 1.8's CLI turns `--range a-b` into a span of b - a - 1 bytes (its help says "end excluded").
    keep = stop - start - 1
    stored = tmp_path / "sliced.c4gh"
    stored.write_bytes(c4gh.rearrange(c4gh.encrypt(plain, [keys.node]), keys.node, start, stop))
    with FileReader.open(stored) as reader:
        parsed = read_header(reader)
    assert open_header(parsed.header, keys.node.node_key()).edit_list == (start % SEG, keep)
    served = tmp_path / "served.c4gh"
    _serve_whole(stored, served, keys)
    assert c4gh.decrypt(served, keys.researcher) == (0, plain[start : start + keep])


def test_header_reencryption_is_stable_in_length_and_fresh_in_bytes(c4gh: Crypt4GH, keys: Keys, tmp_path: Path) -> None:
    stored = tmp_path / "s.c4gh"
    stored.write_bytes(c4gh.encrypt(b"x" * 1000, [keys.other, keys.node]))
    with FileReader.open(stored) as reader:
        header = read_header(reader).header
    node, researcher = keys.node.node_key(), keys.researcher.recipient()
    first, second = reencrypt_header(header.raw, node, researcher), reencrypt_header(header, node, researcher)
    # Same length (a cached Content-Length stays right), different nonces (no replayed ciphertext).
    assert len(first) == len(second) == 16 + 4 + 4 + 32 + 12 + 40 + 16
    assert first != second


def test_header_and_body_parts_cover_the_served_file(c4gh: Crypt4GH, keys: Keys, tmp_path: Path) -> None:
    stored = tmp_path / "s.c4gh"
    stored.write_bytes(c4gh.encrypt(PLAINTEXTS["one-segment"], [keys.node]))
    with FileReader.open(stored) as reader:
        result = reencrypt_stored(reader, keys.node.node_key(), keys.researcher.recipient())
    size = result.served_size
    assert size == len(result.header) + stored.stat().st_size - result.body_offset
    assert result.layout.parts(0, size - 1) == [
        HeaderPart(0, len(result.header)),
        StoredPart(result.body_offset, result.body_length),
    ]
