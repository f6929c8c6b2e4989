"""The hand-written security primitives: scrypt hashes, PKCE, HTTP Basic parsing, safe `next` paths."""

from __future__ import annotations

import base64

import pytest

from broker.login.service import safe_next
from broker.oidc.client_auth import parse_basic
from broker.oidc.errors import OAuthError
from broker.oidc.passwords import hash_secret, verify_secret
from broker.oidc.pkce import s256, valid_challenge, verifier_matches


def test_scrypt_hash_verifies_only_the_same_secret() -> None:
    stored = hash_secret("s3cret-value", log2_n=10)
    assert stored.startswith("scrypt$10$") and "s3cret" not in stored
    assert verify_secret("s3cret-value", stored)
    for wrong in ("s3cret-valu", "s3cret-value ", "S3cret-value", ""):
        assert not verify_secret(wrong, stored)
    assert hash_secret("x", log2_n=10) != hash_secret("x", log2_n=10)  # salted


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "plain",
        "scrypt$10$8$1$AAAA",
        "bcrypt$10$8$1$AAAA$AAAA",
        "scrypt$99$8$1$AAAAAAAA$" + "A" * 43,
        "scrypt$x$8$1$AAAA$AAAA",
        "scrypt$10$8$1$!!$" + "A" * 43,
    ],
)
def test_malformed_stored_hash_never_verifies(stored: str | None) -> None:
    assert verify_secret("anything", stored) is False


def test_pkce_s256_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert verifier_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    assert not verifier_matches(verifier[:-1] + "l", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    assert not verifier_matches("short", s256("short"))
    assert valid_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    assert not valid_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c=")


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_basic_credentials_are_form_decoded() -> None:
    assert parse_basic(_basic(b"my%3Aclient:p%40ss+word")) == ("my:client", "p@ss word")
    assert parse_basic("bAsIc " + base64.b64encode(b"a:b").decode()) == ("a", "b")
    assert parse_basic("Bearer abc") is None


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
    ],
)
def test_malformed_basic_is_invalid_client(header: str) -> None:
    with pytest.raises(OAuthError) as caught:
        parse_basic(header)
    assert caught.value.error == "invalid_client" and caught.value.status == 401 and caught.value.basic_challenge


@pytest.mark.parametrize(
    "value,expected",
    [
        ("/account", "/account"),
        ("/device?user_code=BCDF", "/device?user_code=BCDF"),
        ("//evil.test", None),
        ("/\\evil.test", None),
        ("https://evil.test", None),
        ("/%2F%2Fevil", None),
        ("javascript:x", None),
        ("/a\r\nLocation: x", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_next_allows_only_plain_same_origin_paths(value: str | None, expected: str | None) -> None:
    assert safe_next(value) == expected
