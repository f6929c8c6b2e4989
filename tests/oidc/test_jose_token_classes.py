"""The one JWS path for the OP's tokens: core/jose's token-class checks, and every OP entry point on them.

:func:`broker.core.jose.require_typ` and :func:`broker.core.jose.key_by_kid` are tested rule by
rule; then each hostile header is presented at every place a JWS of ours (or a client's) enters
the OP in this process: access tokens (:meth:`AccessTokens.verify`, the gateway's and userinfo's
check), ID token hints, and client assertions. The same header members are refused at each
(THREAT-MODEL section 1 across EPM a, b, g, i), and no module of the OP or the login area
imports PyJWT to verify anything.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.core.jose import JoseError, key_by_kid, parse, require_typ
from broker.core.models import Reason
from broker.keys.jwk import public_jwk
from broker.oidc.client_auth import JWT_BEARER_ASSERTION, ClientAuthenticator
from broker.oidc.clients import ClientRegistry
from broker.oidc.errors import OAuthError
from broker.oidc.settings import DeclaredClientSettings
from broker.oidc.tokens import ID_TOKEN_TYP, InvalidToken
from tests.oidc.conftest import OpParts
from tests.support.forge import b64, compact, forge

LIMIT = 16_384
DEPTH = 16
ROOT = Path(__file__).resolve().parents[2]


def _jws(header: dict[str, Any]) -> Any:
    return parse(compact(header, {"sub": "x"}, b"s"), max_bytes=LIMIT, max_depth=DEPTH)


# --------------------------------------------------------------------------- require_typ


@pytest.mark.parametrize("typ", ["at+jwt"])
def test_require_typ_accepts_exactly_the_class_typ(typ: str) -> None:
    require_typ(_jws({"alg": "ES256", "typ": typ}), frozenset({"at+jwt"}))


@pytest.mark.parametrize("typ", ["AT+JWT", "application/at+jwt", "JWT", "vnd.ga4gh.visa+jwt", "at+jwt "])
def test_require_typ_refuses_every_other_spelling_when_exact(typ: str) -> None:
    with pytest.raises(JoseError) as refused:
        require_typ(_jws({"alg": "ES256", "typ": typ}), frozenset({"at+jwt"}))
    assert refused.value.reason == Reason.BAD_TYP


def test_require_typ_absent_only_when_allowed() -> None:
    with pytest.raises(JoseError):
        require_typ(_jws({"alg": "ES256"}), frozenset({"JWT"}))
    require_typ(_jws({"alg": "ES256"}), frozenset({None, "jwt"}))


def test_require_typ_ignore_case_is_for_other_parties_media_types() -> None:
    require_typ(
        _jws({"alg": "ES256", "typ": "Client-Authentication+JWT"}),
        frozenset({"client-authentication+jwt"}),
        ignore_case=True,
    )
    with pytest.raises(JoseError):
        require_typ(
            _jws({"alg": "ES256", "typ": "Client-Authentication+JWT"}), frozenset({"client-authentication+jwt"})
        )


# --------------------------------------------------------------------------- key_by_kid

KEYS: dict[str, tuple[str, object]] = {
    "ec": ("ES256", ec.generate_private_key(ec.SECP256R1()).public_key()),
    "rsa": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()),
}


def test_key_by_kid_gives_the_named_key_for_its_own_alg() -> None:
    assert key_by_kid(_jws({"alg": "ES256", "kid": "ec"}), KEYS, "test keys") is KEYS["ec"][1]
    assert key_by_kid(_jws({"alg": "RS256", "kid": "rsa"}), KEYS, "test keys") is KEYS["rsa"][1]


@pytest.mark.parametrize(
    "header,reason",
    [
        ({"alg": "ES256"}, Reason.KID_REQUIRED),  # no kid: never "try every key" (JWT-04)
        ({"alg": "ES256", "kid": "other"}, Reason.KEY_NOT_FOUND),
        ({"alg": "ES256", "kid": "../../../../dev/null"}, Reason.KEY_NOT_FOUND),
        ({"alg": "RS256", "kid": "ec"}, Reason.BAD_ALG),  # the key's alg, not the header's (JWT-03)
        ({"alg": "ES256", "kid": "rsa"}, Reason.BAD_ALG),
    ],
)
def test_key_by_kid_refuses(header: dict[str, Any], reason: Reason) -> None:
    with pytest.raises(JoseError) as refused:
        key_by_kid(_jws(header), KEYS, "test keys")
    assert refused.value.reason == reason


# --------------------------------------------------------------------------- every OP entry point

HOSTILE_HEADERS = [
    pytest.param({"alg": "none"}, "bad_alg", id="alg-none"),
    pytest.param({"alg": "HS256"}, "bad_alg", id="alg-hs256"),
    pytest.param({"alg": "PS256"}, "bad_alg", id="alg-ps256"),
    pytest.param({"alg": "ES256", "jwk": {"kty": "EC"}}, "embedded_key", id="embedded-jwk"),
    pytest.param({"alg": "ES256", "x5c": ["AAAA"]}, "embedded_key", id="embedded-x5c"),
    pytest.param({"alg": "ES256", "x5u": "https://evil.test/c"}, "embedded_key", id="x5u"),
    pytest.param({"alg": "ES256", "crit": ["exp"]}, "crit_unsupported", id="crit"),
    pytest.param({"alg": "ES256", "b64": False, "crit": ["b64"]}, "crit_unsupported", id="b64-false"),
    pytest.param({"alg": "ES256", "enc": "A256GCM"}, "malformed", id="jwe-members"),
]


def _ours(parts: OpParts, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A token signed by the OP's own active key with exactly ``header`` (kid added)."""
    key = parts.op.keys.signing_key()  # type: ignore[attr-defined]
    return forge({**header, "kid": key.kid}, claims, key.private_key)


def _access_claims(parts: OpParts) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": parts.op.issuer,
        "sub": "alice",
        "aud": "app",
        "client_id": "app",
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
        "scope": "openid",
        "grant": "g1",
    }


def test_our_own_access_token_and_id_token_pass_the_path(op_parts: OpParts) -> None:
    """The control: the same forging with our key and a proper header is accepted."""
    token = _ours(op_parts, {"alg": op_parts.op.keys.signing_key().alg, "typ": "at+jwt"}, _access_claims(op_parts))  # type: ignore[attr-defined]
    assert op_parts.op.tokens.verify(token).sub == "alice"
    hint = _ours(op_parts, {"alg": op_parts.op.keys.signing_key().alg, "typ": ID_TOKEN_TYP}, _access_claims(op_parts))  # type: ignore[attr-defined]
    assert op_parts.op.tokens.id_token_hint(hint)["aud"] == "app"


@pytest.mark.parametrize("header,reason", HOSTILE_HEADERS)
def test_hostile_headers_refused_for_access_tokens_and_id_token_hints(
    op_parts: OpParts, header: dict[str, Any], reason: str
) -> None:
    for typ in ("at+jwt", ID_TOKEN_TYP):
        token = _ours(op_parts, {**header, "typ": typ}, _access_claims(op_parts))
        with pytest.raises(InvalidToken) as refused:
            if typ == "at+jwt":
                op_parts.op.tokens.verify(token)
            else:
                op_parts.op.tokens.id_token_hint(token)
        assert refused.value.reason == reason, (typ, refused.value)


@pytest.mark.parametrize("typ", ["JWT", "vnd.ga4gh.visa+jwt", "vnd.ga4gh.passport+jwt", None])
def test_another_token_class_is_not_an_access_token(op_parts: OpParts, typ: str | None) -> None:
    alg = op_parts.op.keys.signing_key().alg  # type: ignore[attr-defined]
    header = {"alg": alg} if typ is None else {"alg": alg, "typ": typ}
    with pytest.raises(InvalidToken) as refused:
        op_parts.op.tokens.verify(_ours(op_parts, header, _access_claims(op_parts)))
    assert refused.value.reason == "bad_typ"


CLIENT_KEY = ec.generate_private_key(ec.SECP256R1())


def _authenticator(parts: OpParts) -> ClientAuthenticator:
    jwk = {**public_jwk(CLIENT_KEY.public_key()), "kid": "ck", "alg": "ES256", "use": "sig"}
    declared = DeclaredClientSettings(client_id="jwt-client", auth_method="private_key_jwt", jwks={"keys": [jwk]})
    return ClientAuthenticator(
        ClientRegistry([declared], parts.op.repository),
        parts.op.repository,
        issuer=parts.op.issuer,
        leeway=60,
        max_json_depth=16,
        limiter=None,
    )


def _assertion(header: dict[str, Any], jti: str) -> str:
    now = int(time.time())
    claims = {"iss": "jwt-client", "sub": "jwt-client", "aud": "https://op.example/", "exp": now + 60, "jti": jti}
    return forge({**header, "kid": "ck"}, claims, CLIENT_KEY)


def _authenticate(authenticator: ClientAuthenticator, assertion: str) -> str:
    form = {"client_assertion_type": JWT_BEARER_ASSERTION, "client_assertion": assertion}
    return authenticator.authenticate(form, None, "https://op.example/token").client.client_id


def test_client_assertion_control_is_accepted(op_parts: OpParts) -> None:
    assert _authenticate(_authenticator(op_parts), _assertion({"alg": "ES256", "typ": "JWT"}, "ok-1")) == "jwt-client"


@pytest.mark.parametrize("header,reason", HOSTILE_HEADERS)
def test_hostile_headers_refused_for_client_assertions(op_parts: OpParts, header: dict[str, Any], reason: str) -> None:
    with pytest.raises(OAuthError) as refused:
        _authenticate(_authenticator(op_parts), _assertion(header, f"bad-{reason}"))
    assert refused.value.code == "invalid_client" and refused.value.status == 401


@pytest.mark.parametrize("typ", ["at+jwt", "vnd.ga4gh.visa+jwt", "dpop+jwt"])
def test_another_token_class_is_not_a_client_assertion(op_parts: OpParts, typ: str) -> None:
    with pytest.raises(OAuthError):
        _authenticate(_authenticator(op_parts), _assertion({"alg": "ES256", "typ": typ}, f"typ-{typ}"))


def test_padded_or_high_s_variants_of_a_used_assertion_are_replays(op_parts: OpParts) -> None:
    """Replay is keyed on (client, jti), never on the token string (JWT-22, JWT-23, JWT-29)."""
    authenticator = _authenticator(op_parts)
    good = _assertion({"alg": "ES256"}, "once")
    assert _authenticate(authenticator, good) == "jwt-client"
    head, _, signature = good.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    twin = f"{head}.{b64(r.to_bytes(32, 'big') + (order - s).to_bytes(32, 'big'))}"
    for variant in (good, twin):  # the twin is a valid ECDSA signature: only the jti can tell
        with pytest.raises(OAuthError) as refused:
            _authenticate(authenticator, variant)
        assert "replayed" in refused.value.message
    with pytest.raises(OAuthError):
        _authenticate(authenticator, good + "==")  # a second spelling is not even a compact JWS


def test_no_oidc_or_login_module_verifies_with_pyjwt() -> None:
    """Every inbound JWS of the OP and the login area goes through core/jose (issue 10, item 4)."""
    offenders = []
    for folder in ("broker/oidc", "broker/login", "broker/identity", "broker/web"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if re.search(r"^\s*(import jwt|from jwt\b)", text, re.M):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_kid_null_in_a_client_assertion_is_refused_as_malformed_not_taken_as_absent(op_parts: OpParts) -> None:
    """Issue 11 (key-id rules): ``"kid": null`` is not a string (RFC 7515 4.1.4); it must not pick the no-kid rule,
    which accepts an assertion without ``kid`` when the client registered exactly one key."""
    now = int(time.time())
    claims = {"iss": "jwt-client", "sub": "jwt-client", "aud": "https://op.example/", "exp": now + 60}
    without_kid = forge({"alg": "ES256", "typ": "JWT"}, {**claims, "jti": "kid-absent"}, CLIENT_KEY)
    assert _authenticate(_authenticator(op_parts), without_kid) == "jwt-client"  # the control: absent is allowed
    with pytest.raises(JoseError) as parsed:
        parse(forge({"alg": "ES256", "typ": "JWT", "kid": None}, claims, CLIENT_KEY), max_bytes=8192, max_depth=16)
    assert parsed.value.reason == Reason.MALFORMED and "null" in parsed.value.detail
    null_kid = forge({"alg": "ES256", "typ": "JWT", "kid": None}, {**claims, "jti": "kid-null"}, CLIENT_KEY)
    with pytest.raises(OAuthError) as refused:
        _authenticate(_authenticator(op_parts), null_kid)
    assert refused.value.code == "invalid_client" and refused.value.status == 401
