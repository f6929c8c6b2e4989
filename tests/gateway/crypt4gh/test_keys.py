"""Node key loading from crypt4gh-keygen files and strict parsing of the researcher's key from a header."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.gateway.c4gh import NodeKeyError, PublicKeyError, load_node_key, parse_recipient_key
from broker.gateway.c4gh.keys import MAX_PUBLIC_KEY_HEADER_CHARS
from tests.gateway.crypt4gh.conftest import Crypt4GH, Keys

# ---------------------------------------------------------------- node key


def _pub_bytes(pub: Path) -> bytes:
    lines = [line for line in pub.read_bytes().splitlines() if line.strip()]
    return base64.b64decode(lines[1])


def test_node_key_from_env_passphrase_matches_the_public_key_file(keys: Keys) -> None:
    key = load_node_key(keys.node.sec, passphrase_env="NODE_PASS", environ={"NODE_PASS": keys.node.passphrase})
    assert key.public == _pub_bytes(keys.node.pub)
    assert len(key.secret) == 32


def test_node_key_from_os_environ_by_default(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C4GH_NODE_TEST_PASS", keys.node.passphrase)
    assert load_node_key(keys.node.sec, passphrase_env="C4GH_NODE_TEST_PASS").public == _pub_bytes(keys.node.pub)


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_node_key_from_passphrase_file_drops_one_trailing_newline(keys: Keys, tmp_path: Path, ending: str) -> None:
    secret = tmp_path / "pass"
    secret.write_bytes((keys.node.passphrase + ending).encode())
    assert load_node_key(keys.node.sec, passphrase_file=secret).public == _pub_bytes(keys.node.pub)


def test_wrong_passphrase_is_a_typed_error_that_does_not_exit_or_echo(
    keys: Keys, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(NodeKeyError) as info:
        load_node_key(keys.node.sec, passphrase_env="P", environ={"P": "not-the-passphrase-xyz"})
    assert info.value.code == "node_key_wrong_passphrase"
    assert "not-the-passphrase-xyz" not in str(info.value) + caplog.text + "".join(capsys.readouterr())


def test_the_secret_key_and_passphrase_never_appear_in_repr_or_logs(
    keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        key = keys.node.node_key()
    text = repr(key) + caplog.text
    assert key.secret.hex() not in text and repr(key.secret) not in text
    assert keys.node.passphrase not in text


_SK_BEGIN = b"-----BEGIN CRYPT4GH PRIVATE KEY-----\n"
_SK_END = b"\n-----END CRYPT4GH PRIVATE KEY-----\n"


def _armour(blob: bytes) -> bytes:
    return _SK_BEGIN + base64.b64encode(blob) + _SK_END


def _s(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(NodeKeyError) as info:
        load_node_key(tmp_path / "absent.sec", passphrase_env="P", environ={"P": "x"})
    assert info.value.code == "node_key_missing"


def test_key_file_that_is_a_folder_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(NodeKeyError) as info:
        load_node_key(tmp_path, passphrase_env="P", environ={"P": "x"})
    assert info.value.code == "node_key_unreadable"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello\n",
        b"-----BEGIN CRYPT4GH PUBLIC KEY-----\nAAAA\n-----END CRYPT4GH PUBLIC KEY-----\n",
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        b"-----BEGIN CRYPT4GH PRIVATE KEY-----\n!!!notbase64\n-----END CRYPT4GH PRIVATE KEY-----\n",
        _armour(b"c4gh-v2 xx"),
        _armour(b"c4gh-v1\x00"),
        _armour(b"c4gh-v1\x00\x06scrypt\xff\xff"),
    ],
    ids=["empty", "text", "public-key", "openssh", "bad-base64", "bad-magic", "truncated", "truncated-options"],
)
def test_not_a_crypt4gh_private_key(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.sec"
    path.write_bytes(content)
    with pytest.raises(NodeKeyError) as info:
        load_node_key(path, passphrase_env="P", environ={"P": "x"})
    assert info.value.code == "node_key_not_crypt4gh"
    assert "crypt4gh-keygen" in info.value.message


@pytest.mark.parametrize(
    "blob",
    [
        b"c4gh-v1" + _s(b"argon2") + _s(b"\0\0\0\1" + b"s" * 16) + _s(b"chacha20_poly1305") + _s(b"x" * 60),
        b"c4gh-v1" + _s(b"bcrypt") + _s(b"\x7f\xff\xff\xff" + b"s" * 16) + _s(b"chacha20_poly1305") + _s(b"x" * 60),
        b"c4gh-v1" + _s(b"pbkdf2_hmac_sha256") + _s(b"\xff\0\0\0" + b"s" * 16) + _s(b"chacha20_poly1305") + _s(b"x"),
        b"c4gh-v1" + _s(b"scrypt") + _s(b"\0\0\0\0" + b"s" * 16) + _s(b"aes256_gcm") + _s(b"x" * 60),
    ],
    ids=["unknown-kdf", "bcrypt-rounds-2^31", "pbkdf2-rounds-huge", "unknown-cipher"],
)
def test_unsupported_or_unbounded_key_parameters_are_refused_before_any_work(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "k.sec"
    path.write_bytes(_armour(blob))
    with pytest.raises(NodeKeyError) as info:
        load_node_key(path, passphrase_env="P", environ={"P": "x"})
    assert info.value.code == "node_key_unsupported"


def test_oversized_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.sec"
    path.write_bytes(b"A" * 100_000)
    with pytest.raises(NodeKeyError) as info:
        load_node_key(path, passphrase_env="P", environ={"P": "x"})
    assert info.value.code == "node_key_unreadable"


def test_passphrase_env_not_set_names_the_variable(keys: Keys) -> None:
    with pytest.raises(NodeKeyError) as info:
        load_node_key(keys.node.sec, passphrase_env="C4GH_NODE_PASS_UNSET", environ={})
    assert info.value.code == "node_key_passphrase_missing"
    assert "C4GH_NODE_PASS_UNSET" in info.value.message


def test_locked_key_without_passphrase_source(keys: Keys) -> None:
    with pytest.raises(NodeKeyError) as info:
        load_node_key(keys.node.sec)
    assert info.value.code == "node_key_passphrase_missing"


def test_passphrase_file_missing_or_empty(keys: Keys, tmp_path: Path) -> None:
    with pytest.raises(NodeKeyError) as info:
        load_node_key(keys.node.sec, passphrase_file=tmp_path / "nope")
    assert info.value.code == "node_key_passphrase_missing"
    (tmp_path / "empty").write_bytes(b"\n")
    with pytest.raises(NodeKeyError) as info:
        load_node_key(keys.node.sec, passphrase_file=tmp_path / "empty")
    assert info.value.code == "node_key_passphrase_missing"


def test_both_passphrase_sources_is_ambiguous(keys: Keys, tmp_path: Path) -> None:
    with pytest.raises(NodeKeyError) as info:
        load_node_key(keys.node.sec, passphrase_env="P", passphrase_file=tmp_path / "p")
    assert info.value.code == "node_key_passphrase_ambiguous"


def test_unencrypted_key_refused_unless_allowed(c4gh: Crypt4GH, tmp_path: Path) -> None:
    pair = c4gh.make_keys(tmp_path, "plain", "")  # empty passphrase: crypt4gh-keygen stores it in clear
    with pytest.raises(NodeKeyError) as info:
        load_node_key(pair.sec)
    assert info.value.code == "node_key_unencrypted"
    assert load_node_key(pair.sec, allow_unencrypted=True).public == _pub_bytes(pair.pub)


def test_node_key_error_maps_to_a_500_json_error(tmp_path: Path) -> None:
    with pytest.raises(NodeKeyError) as info:
        load_node_key(tmp_path / "absent.sec")
    api = info.value
    assert (api.status, api.body()["error"]) == (500, "node_key_missing")


# ---------------------------------------------------------------- researcher key


def test_public_key_as_base64_of_the_whole_file(keys: Keys) -> None:
    assert parse_recipient_key(keys.researcher.pub_header_value()).public == _pub_bytes(keys.researcher.pub)


def test_public_key_as_base64_of_the_raw_32_bytes(keys: Keys) -> None:
    raw = _pub_bytes(keys.researcher.pub)
    assert parse_recipient_key(base64.b64encode(raw).decode()).public == raw
    assert parse_recipient_key(base64.b64encode(raw)).public == raw  # bytes header values too


def test_public_key_file_with_crlf_and_blank_lines_and_surrounding_spaces(keys: Keys) -> None:
    raw = _pub_bytes(keys.researcher.pub)
    text = b"\r\n-----BEGIN CRYPT4GH PUBLIC KEY-----\r\n" + base64.b64encode(raw)
    text += b"\r\n\r\n-----END CRYPT4GH PUBLIC KEY-----"
    assert parse_recipient_key("  " + base64.b64encode(text).decode() + "\t").public == raw


def test_the_parsed_key_agrees_with_the_crypt4gh_package(keys: Keys) -> None:
    from crypt4gh.keys import get_public_key  # type: ignore[import-untyped]

    assert parse_recipient_key(keys.researcher.pub_header_value()).public == get_public_key(str(keys.researcher.pub))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_P = 2**255 - 19
_ORDER_8_A = 325606250916557431795983626356110631294008115727848805560023387167927233504
_ORDER_8_B = 39382357235489614581723060781553021112529911719440698176882885853963445705823
_GOOD = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")  # RFC 7748 Bob


def _armoured(key_b64: bytes) -> str:
    return _b64(b"-----BEGIN CRYPT4GH PUBLIC KEY-----\n" + key_b64 + b"\n-----END CRYPT4GH PUBLIC KEY-----\n")


BAD_KEYS: dict[str, str | bytes | None] = {
    "absent": None,
    "empty": "",
    "spaces": "   ",
    "too-long": "A" * (MAX_PUBLIC_KEY_HEADER_CHARS + 4),
    "non-ascii": "é" * 44,
    "not-base64": "this is not base64!!",
    "no-padding": _b64(_GOOD).rstrip("="),
    "url-safe": _b64(b"\xfb\xff" * 16).replace("+", "-").replace("/", "_"),
    "inner-space": _b64(_GOOD)[:20] + " " + _b64(_GOOD)[20:],
    "inner-newline": _b64(_GOOD)[:20] + "\n" + _b64(_GOOD)[20:],
    "non-canonical-bits": _b64(_GOOD)[:42] + "9=",  # same bytes, trailing bits set
    "31-bytes": _b64(_GOOD[:31]),
    "33-bytes": _b64(_GOOD + b"\0"),
    "64-bytes": _b64(_GOOD * 2),
    "pem-sent-raw": "-----BEGIN CRYPT4GH PUBLIC KEY-----\n" + _b64(_GOOD) + "\n-----END CRYPT4GH PUBLIC KEY-----",
    "armour-wrong-label": _b64(b"-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----\n" % base64.b64encode(_GOOD)),
    "armour-no-end": _b64(b"-----BEGIN CRYPT4GH PUBLIC KEY-----\n" + _b64(_GOOD).encode() + b"\n"),
    "armour-two-lines": _b64(
        b"-----BEGIN CRYPT4GH PUBLIC KEY-----\n"
        + _b64(_GOOD).encode()[:20]
        + b"\n"
        + _b64(_GOOD).encode()[20:]
        + b"\n-----END CRYPT4GH PUBLIC KEY-----\n"
    ),
    "armour-16-bytes": _armoured(base64.b64encode(_GOOD[:16])),
    "armour-bad-inner-base64": _armoured(b"!" * 44),
    "armour-private-key": _b64(b"-----BEGIN CRYPT4GH PRIVATE KEY-----\nAAAA\n-----END CRYPT4GH PRIVATE KEY-----\n"),
    "openssh": _b64(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host"),
    "all-zero": _b64(bytes(32)),
    "one": _b64((1).to_bytes(32, "little")),
    "order-8-a": _b64(_ORDER_8_A.to_bytes(32, "little")),
    "order-8-b": _b64(_ORDER_8_B.to_bytes(32, "little")),
    "p-minus-1": _b64((_P - 1).to_bytes(32, "little")),
    "p (non-canonical zero)": _b64(_P.to_bytes(32, "little")),
    "p+1 (non-canonical one)": _b64((_P + 1).to_bytes(32, "little")),
    "high-bit-set": _b64(_GOOD[:31] + bytes([_GOOD[31] | 0x80])),
    "all-zero-armoured": _armoured(base64.b64encode(bytes(32))),
}


@pytest.mark.parametrize("value", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_bad_public_keys_get_a_typed_error_that_says_how_to_send_one(value: str | bytes | None) -> None:
    with pytest.raises(PublicKeyError) as info:
        parse_recipient_key(value, header_name="Htsget-Context-Public-Key")
    assert info.value.code in {"invalid_public_key", "public_key_missing"}
    assert "Htsget-Context-Public-Key" in info.value.message
    assert "base64" in info.value.message
    api = info.value
    assert api.status == 400 and api.body()["error"] == info.value.code


def test_the_known_good_point_is_accepted() -> None:
    # Guards the table above: the bad keys fail for their defect, not because _GOOD is bad.
    assert parse_recipient_key(_b64(_GOOD)).public == _GOOD
    assert parse_recipient_key(_armoured(base64.b64encode(_GOOD))).public == _GOOD


def test_the_messages_say_what_is_wrong() -> None:
    with pytest.raises(PublicKeyError, match="low-order"):
        parse_recipient_key(BAD_KEYS["all-zero"])
    with pytest.raises(PublicKeyError, match="URL-safe"):
        parse_recipient_key(BAD_KEYS["url-safe"])
    with pytest.raises(PublicKeyError, match="as a whole"):
        parse_recipient_key(BAD_KEYS["pem-sent-raw"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), st.binary(max_size=200).map(_b64)))
def test_any_header_value_parses_or_gets_a_typed_error(value: str | bytes) -> None:
    try:
        key = parse_recipient_key(value)
    except PublicKeyError as exc:
        assert exc.code in {"invalid_public_key", "public_key_missing"}
    else:
        assert len(key.public) == 32


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_random_32_byte_keys_are_accepted_exactly_when_canonical_and_not_low_order(raw: bytes) -> None:
    value = int.from_bytes(raw, "little")
    low_order = {0, 1, _ORDER_8_A, _ORDER_8_B, _P - 1}
    try:
        parse_recipient_key(_b64(raw))
    except PublicKeyError:
        assert value >= _P or value in low_order
    else:
        assert value < _P and value not in low_order


def test_keys_made_with_os_urandom_are_accepted() -> None:
    for _ in range(50):
        raw = bytearray(os.urandom(32))
        raw[31] &= 0x7F
        assert parse_recipient_key(_b64(bytes(raw))).public == bytes(raw)


def _zero_shared_secret(raw: bytes) -> bool:
    """What OpenSSL says: does X25519 with a fresh scalar give the all-zero secret for this point?"""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        return True
    return False


def test_the_small_order_table_agrees_with_openssl_on_every_encoding() -> None:
    from broker.gateway.c4gh._sodium import is_small_order

    candidates = [0, 1, _ORDER_8_A, _ORDER_8_B, _P - 1, _P, _P + 1, 2, 9, _P - 2, int.from_bytes(_GOOD, "little")]
    for u in candidates:
        for top_bit in (0, 1 << 255):
            value = u | top_bit
            if value >= 1 << 256:
                continue
            raw = value.to_bytes(32, "little")
            assert is_small_order(raw) == _zero_shared_secret(raw), hex(value)
    for _ in range(200):
        raw = os.urandom(32)
        assert is_small_order(raw) == _zero_shared_secret(raw)
