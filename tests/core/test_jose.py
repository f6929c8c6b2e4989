"""broker.core.jose: strict compact-JWS parsing and RS256/ES256 signature checks.

Every rule of the module docstring has a test here that fails if the rule is loosened.
Both base64 decoders (pybase64 when installed, the standard library otherwise) run every
test, since they must refuse exactly the same bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from broker.core import jose
from broker.core.jose import JoseError, b64url_decode, b64url_encode, loads_strict, parse, verify_signature
from broker.core.models import Reason
from tests.support.forge import TestKey, b64, compact, encode_part, forge, sign_es256

LIMIT = 16_384
DEPTH = 16
HEADER = {"alg": "ES256", "kid": "k1", "typ": "vnd.ga4gh.visa+jwt"}
PAYLOAD = {"iss": "https://issuer.test/", "sub": "alice", "n": 1}

DECODERS = ["stdlib"] + (["pybase64"] if jose.pybase64 is not None else [])


@pytest.fixture(params=DECODERS, autouse=True)
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run each test with each base64 decoder and an empty header memo."""
    chosen = jose._b64decode_binascii if request.param == "stdlib" else jose._b64decode_pybase64
    monkeypatch.setattr(jose, "_b64decode", chosen)
    jose._HEADERS.clear()
    yield request.param
    jose._HEADERS.clear()


@pytest.fixture(scope="module")
def es_key() -> TestKey:
    return TestKey.generate("ES256", "k1")


@pytest.fixture(scope="module")
def rs_key() -> TestKey:
    return TestKey.generate("RS256", "r1")


def parsed(token: str) -> jose.Jws:
    return parse(token, max_bytes=LIMIT, max_depth=DEPTH)


def refused(token: object, reason: Reason, max_bytes: int = LIMIT, max_depth: int = DEPTH) -> JoseError:
    with pytest.raises(JoseError) as info:
        parse(token, max_bytes=max_bytes, max_depth=max_depth)
    assert info.value.reason is reason, info.value.detail
    return info.value


# ---------------------------------------------------------------------- a good token


def test_good_token_parses_and_verifies(es_key: TestKey) -> None:
    token = es_key.sign(HEADER, PAYLOAD)
    jws = parsed(token)
    assert dict(jws.header) == HEADER and jws.payload == PAYLOAD
    assert jws.alg == "ES256" and jws.kid == "k1" and jws.typ == "vnd.ga4gh.visa+jwt" and jws.jku is None
    assert jws.signing_input == token.rsplit(".", 1)[0].encode()
    verify_signature(jws, es_key.public)


def test_rs256_token_verifies(rs_key: TestKey) -> None:
    verify_signature(parsed(rs_key.sign({**HEADER, "alg": "RS256"}, PAYLOAD)), rs_key.public)


def test_jku_is_reported_not_used(es_key: TestKey) -> None:
    jws = parsed(es_key.sign({**HEADER, "jku": "https://issuer.test/jwks.json"}, PAYLOAD))
    assert jws.jku == "https://issuer.test/jwks.json"


def test_header_is_read_only(es_key: TestKey) -> None:
    jws = parsed(es_key.sign(HEADER, PAYLOAD))
    with pytest.raises(TypeError):
        jws.header["alg"] = "none"  # type: ignore[index]


def test_header_memo_gives_the_same_answer_as_a_fresh_parse(es_key: TestKey) -> None:
    first = parsed(es_key.sign(HEADER, PAYLOAD))
    second = parsed(es_key.sign(HEADER, {**PAYLOAD, "n": 2}))
    assert second.header is first.header  # shared, read-only
    assert second.payload["n"] == 2


def test_header_memo_is_bounded(es_key: TestKey) -> None:
    for i in range(jose.HEADER_MEMO_ENTRIES + 5):
        parsed(compact({**HEADER, "kid": f"k{i}"}, PAYLOAD, b"x" * 64))
    assert len(jose._HEADERS) <= jose.HEADER_MEMO_ENTRIES


def test_refused_header_is_not_remembered() -> None:
    bad = {"alg": "none"}
    for _ in range(2):
        refused(compact(bad, PAYLOAD, b"sig"), Reason.BAD_ALG)
    assert jose._HEADERS == {}


# ---------------------------------------------------------------------- shape and size


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",
        ".b.c",
        "a..c",
        "a.b.",
        "a.b.c.",
    ],
)
def test_not_three_nonempty_segments_is_malformed(token: str) -> None:
    refused(token, Reason.MALFORMED)


def test_empty_signature_is_a_bad_signature_not_a_shape_error(es_key: TestKey) -> None:
    head = es_key.sign(HEADER, PAYLOAD).rsplit(".", 1)[0]
    jws = parsed(head + ".")
    assert jws.signature == b""
    _bad_signature(jws, es_key.public)
    refused(compact({"alg": "none"}, PAYLOAD), Reason.BAD_ALG)


@pytest.mark.parametrize("value", [None, b"a.b.c", 123, ["a", "b", "c"]])
def test_non_string_token_is_malformed(value: object) -> None:
    refused(value, Reason.MALFORMED)


def test_size_limit_is_checked_before_decoding() -> None:
    token = "x" * (LIMIT + 1)  # not even a JWS: the size is what is reported
    refused(token, Reason.TOO_LARGE)
    refused(compact(HEADER, PAYLOAD, b"s"), Reason.TOO_LARGE, max_bytes=10)


def test_huge_header_is_too_large() -> None:
    refused(compact({**HEADER, "x": "y" * 5000}, PAYLOAD, b"s"), Reason.TOO_LARGE)


def test_non_ascii_token_is_malformed(es_key: TestKey) -> None:
    token = es_key.sign(HEADER, PAYLOAD)
    refused(token[:10] + "é" + token[11:], Reason.MALFORMED)


# ---------------------------------------------------------------------- base64url


def _with_segment(token: str, index: int, segment: str) -> str:
    parts = token.split(".")
    parts[index] = segment
    return ".".join(parts)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("change", ["pad", "pad2", "plus", "slash", "space", "newline", "tab", "star", "trunc1"])
def test_non_canonical_base64url_is_malformed(es_key: TestKey, index: int, change: str) -> None:
    token = es_key.sign(HEADER, PAYLOAD)
    segment = token.split(".")[index]
    mutated = {
        "pad": segment + "=",
        "pad2": segment + "==",
        "plus": segment[:5] + "+" + segment[6:],
        "slash": segment[:5] + "/" + segment[6:],
        "space": segment[:5] + " " + segment[5:],
        "newline": segment[:5] + "\n" + segment[5:],
        "tab": segment + "\t",
        "star": segment[:5] + "*" + segment[6:],
        "trunc1": segment + "A" if len(segment) % 4 == 0 else segment[: len(segment) - (len(segment) % 4) + 1],
    }[change]
    refused(_with_segment(token, index, mutated), Reason.MALFORMED)


def test_unused_bits_must_be_zero(es_key: TestKey) -> None:
    """Two spellings of one token must not both be accepted (RFC 4648 section 3.5)."""
    token = es_key.sign(HEADER, PAYLOAD)
    signature = token.split(".")[2]  # 64 bytes -> 86 chars, 4 unused bits in the last one
    assert len(signature) % 4 == 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    twin = signature[:-1] + alphabet[last | 1]  # same decoded bytes, non-zero unused bit
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(signature + "==")
    refused(_with_segment(token, 2, twin), Reason.MALFORMED)


def test_b64url_round_trip_and_strict_decode() -> None:
    for n in range(0, 40):
        data = bytes(range(n))
        assert b64url_decode(b64url_encode(data)) == data
    for bad in ("AA==", "A", "AB", "a+b", "a b", "AAA="):
        with pytest.raises(JoseError):
            b64url_decode(bad)


# ---------------------------------------------------------------------- JSON


def _raw_token(header: bytes | dict[str, Any], payload: bytes | dict[str, Any]) -> str:
    return f"{encode_part(header)}.{encode_part(payload)}.{b64(b'x' * 64)}"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sub":"alice","sub":"admin"}',
        b'{"a":{"b":1,"b":2}}',
        b'{"ga4gh_visa_v1":{},"ga4gh_visa_v1":{}}',
    ],
)
def test_duplicate_members_in_payload_are_refused(payload: bytes) -> None:
    refused(_raw_token(HEADER, payload), Reason.DUPLICATE_KEY)


def test_duplicate_members_in_header_are_refused() -> None:
    refused(_raw_token(b'{"alg":"ES256","alg":"none"}', PAYLOAD), Reason.DUPLICATE_KEY)


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'"str"',
        b"123",
        b"null",
        b"true",
    ],
)
def test_payload_must_be_an_object(payload: bytes) -> None:
    refused(_raw_token(HEADER, payload), Reason.MALFORMED)


@pytest.mark.parametrize("header", [b"[]", b'"ES256"', b"1"])
def test_header_must_be_an_object(header: bytes) -> None:
    refused(_raw_token(header, PAYLOAD), Reason.MALFORMED)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"exp":NaN}',
        b'{"exp":Infinity}',
        b'{"exp":-Infinity}',
        b'{"exp":1e400}',
        b'{"a":1} x',
        b'{"a":1}{"b":2}',
        b"\xef\xbb\xbf{}",
        b"\xff\xfe{}",
        b'{"a":"\xc0\xaf"}',
        b'{"a":"\xed\xa0\x80"}',
        b'{"a":"\\ud800"}',
        b'{"a":"x\\u0000y"}',
        b'{"\\ud800":1}',
        b"{'a':1}",
        b'{"a":1,}',
        b"",
        b'{"a":' + b"9" * 5000 + b"}",
    ],
)
def test_not_strict_json_is_malformed(payload: bytes) -> None:
    refused(_raw_token(HEADER, payload), Reason.MALFORMED)


def test_surrogate_pairs_and_whitespace_are_fine() -> None:
    jws = parsed(_raw_token(HEADER, b' \n{"a": "\\ud83d\\ude00", "b" : [1, 2]}\r\n'))
    assert jws.payload == {"a": "\U0001f600", "b": [1, 2]}


@pytest.mark.parametrize("depth", [DEPTH + 1, 40, 5000])
def test_deep_nesting_is_too_deep(depth: int) -> None:
    nested = b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    refused(_raw_token(HEADER, nested), Reason.TOO_DEEP, max_bytes=1 << 20)


def test_depth_at_the_limit_is_fine() -> None:
    nested = b'{"a":' + b"[" * (DEPTH - 1) + b"]" * (DEPTH - 1) + b"}"
    assert parsed(_raw_token(HEADER, nested)).payload["a"]


def test_brackets_in_strings_do_not_count_as_depth() -> None:
    payload = {"a": "{" * 40 + "[" * 40}
    assert parsed(_raw_token(HEADER, payload)).payload == payload


def test_big_payload_is_walked_for_depth() -> None:
    payload = {"pad": "x" * 3000, "deep": json.loads("[" * 20 + "]" * 20)}
    refused(_raw_token(HEADER, payload), Reason.TOO_DEEP)


def test_loads_strict_directly() -> None:
    assert loads_strict(b'{"a":[1,{"b":null}]}', 8) == {"a": [1, {"b": None}]}
    with pytest.raises(JoseError) as info:
        loads_strict(b'{"a":1,"a":1}', 8)
    assert info.value.reason is Reason.DUPLICATE_KEY


# ---------------------------------------------------------------------- header rules


@pytest.mark.parametrize(
    "alg",
    [
        "none",
        "None",
        "NONE",
        "nOnE",
        "HS256",
        "HS384",
        "HS512",
        "RS384",
        "RS512",
        "PS256",
        "ES384",
        "ES512",
        "ES256K",
        "EdDSA",
        "es256",
        "rs256",
        "ES256 ",
        " RS256",
        "",
        None,
        256,
        ["ES256"],
        {"alg": "ES256"},
    ],
)
def test_only_rs256_and_es256(alg: object) -> None:
    refused(compact({**HEADER, "alg": alg}, PAYLOAD, b"x" * 64), Reason.BAD_ALG)


def test_missing_alg_is_bad_alg() -> None:
    refused(compact({"kid": "k1"}, PAYLOAD, b"x" * 64), Reason.BAD_ALG)


@pytest.mark.parametrize(
    "member,value",
    [
        ("jwk", {"kty": "EC"}),
        ("x5c", ["MIIB"]),
        ("x5u", "https://evil.test/cert.pem"),
        ("jwk", None),
    ],
)
def test_embedded_key_material_is_refused(member: str, value: object, es_key: TestKey) -> None:
    refused(es_key.sign({**HEADER, member: value}, PAYLOAD), Reason.EMBEDDED_KEY)


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["foo"], "foo": 1},
        {"crit": []},
        {"crit": ["alg"]},
        {"crit": ["b64"], "b64": False},
        {"b64": False},
    ],
)
def test_extensions_are_refused(extra: dict[str, Any], es_key: TestKey) -> None:
    refused(es_key.sign({**HEADER, **extra}, PAYLOAD), Reason.CRIT_UNSUPPORTED)


@pytest.mark.parametrize("extra", [{"enc": "A256GCM"}, {"zip": "DEF"}])
def test_jwe_members_are_refused(extra: dict[str, Any], es_key: TestKey) -> None:
    refused(es_key.sign({**HEADER, **extra}, PAYLOAD), Reason.MALFORMED)


@pytest.mark.parametrize("kid", [123, ["k1"], {"k": 1}, "", "k" * 257, True])
def test_kid_must_be_a_short_string(kid: object, es_key: TestKey) -> None:
    refused(es_key.sign({**HEADER, "kid": kid}, PAYLOAD), Reason.MALFORMED)


@pytest.mark.parametrize("member,value", [("typ", 1), ("typ", ["JWT"]), ("jku", 1), ("jku", ""), ("jku", "h" * 3000)])
def test_typ_and_jku_must_be_strings(member: str, value: object, es_key: TestKey) -> None:
    refused(es_key.sign({**HEADER, member: value}, PAYLOAD), Reason.MALFORMED)


# ---------------------------------------------------------------------- signatures


def _bad_signature(jws: jose.Jws, key: object, reason: Reason = Reason.BAD_SIGNATURE) -> None:
    with pytest.raises(JoseError) as info:
        verify_signature(jws, key)
    assert info.value.reason is reason, info.value.detail


def test_wrong_key_is_bad_signature(es_key: TestKey) -> None:
    other = TestKey.generate("ES256", "k2")
    _bad_signature(parsed(es_key.sign(HEADER, PAYLOAD)), other.public)


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_any_flipped_bit_is_refused(es_key: TestKey, segment: int) -> None:
    token = es_key.sign(HEADER, {**PAYLOAD, "pad": "abcdefgh"})
    parts = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[segment] + "=" * (-len(parts[segment]) % 4)))
    raw[len(raw) // 2] ^= 0x04
    parts[segment] = b64(bytes(raw))
    try:
        jws = parsed(".".join(parts))
    except JoseError:
        return  # the flip broke the JSON: refused before the signature
    _bad_signature(jws, es_key.public)


def test_es256_der_signature_is_refused(es_key: TestKey) -> None:
    token = es_key.sign(HEADER, PAYLOAD)
    head = token.rsplit(".", 1)[0]
    der = es_key.private.sign(head.encode(), ec.ECDSA(jose.hashes.SHA256()))
    _bad_signature(parsed(f"{head}.{b64(der)}"), es_key.public)


@pytest.mark.parametrize("length", [0, 1, 32, 63, 65, 96, 128])
def test_es256_signature_must_be_64_bytes(es_key: TestKey, length: int) -> None:
    head = es_key.sign(HEADER, PAYLOAD).rsplit(".", 1)[0]
    _bad_signature(parsed(f"{head}.{b64(bytes([7]) * length)}" if length else f"{head}.AA"), es_key.public)


def test_es256_zero_signature_is_refused(es_key: TestKey) -> None:
    head = es_key.sign(HEADER, PAYLOAD).rsplit(".", 1)[0]
    _bad_signature(parsed(f"{head}.{b64(bytes(64))}"), es_key.public)
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    _bad_signature(parsed(f"{head}.{b64(bytes(32) + n.to_bytes(32, 'big'))}"), es_key.public)


def test_es256_high_s_twin_verifies_mathematically(es_key: TestKey) -> None:
    """ECDSA (r, n-s) is a valid signature too (THREAT-MODEL JWT-23): so nothing may key on signature bytes."""
    head = es_key.sign(HEADER, PAYLOAD).rsplit(".", 1)[0]
    raw = sign_es256(es_key.private, head.encode())
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    twin = r.to_bytes(32, "big") + (n - s).to_bytes(32, "big")
    verify_signature(parsed(f"{head}.{b64(twin)}"), es_key.public)
    assert decode_dss_signature(encode_dss_signature(r, n - s)) == (r, n - s)


def test_rs256_signature_must_be_modulus_length(rs_key: TestKey) -> None:
    token = rs_key.sign({**HEADER, "alg": "RS256"}, PAYLOAD)
    head, _, sig = token.rpartition(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    _bad_signature(parsed(f"{head}.{b64(raw[1:])}"), rs_key.public)
    _bad_signature(parsed(f"{head}.{b64(bytes(1) + raw)}"), rs_key.public)


def test_key_must_match_alg(es_key: TestKey, rs_key: TestKey) -> None:
    _bad_signature(parsed(es_key.sign(HEADER, PAYLOAD)), rs_key.public, Reason.BAD_ALG)
    _bad_signature(parsed(rs_key.sign({**HEADER, "alg": "RS256"}, PAYLOAD)), es_key.public, Reason.BAD_ALG)
    p384 = ec.generate_private_key(ec.SECP384R1())
    _bad_signature(parsed(es_key.sign(HEADER, PAYLOAD)), p384.public_key(), Reason.BAD_ALG)
    _bad_signature(parsed(es_key.sign(HEADER, PAYLOAD)), b"a shared secret", Reason.BAD_ALG)


def test_weak_rsa_key_is_refused() -> None:
    weak = TestKey.generate("RS256", "weak", bits=1024)
    _bad_signature(parsed(weak.sign({**HEADER, "alg": "RS256"}, PAYLOAD)), weak.public, Reason.KEY_NOT_FOUND)


def test_error_detail_never_contains_the_token(es_key: TestKey) -> None:
    token = es_key.sign(HEADER, {**PAYLOAD, "secret": "s3cr3t-value"})
    for bad in (token + "=", token.replace(".", "..", 1), token[:-3]):
        try:
            jws = parsed(bad)
            verify_signature(jws, es_key.public)
        except JoseError as exc:
            assert "s3cr3t" not in exc.detail and token.split(".")[1][:20] not in exc.detail


def test_forge_helpers_build_what_they_say(es_key: TestKey) -> None:
    token = forge({"alg": "none"}, {"a": 1})
    assert token.endswith(".") and json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==")) == {"alg": "none"}
