"""The access-token signature cache: a repeated token skips the signature check, nothing else.

Every test runs against a real store (sqlite and redis, through ``op_runtime``) and a real key
ring; signature checks are counted by wrapping ``broker.oidc.tokens.verify_signed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broker.oidc import tokens
from broker.oidc.consent_withdrawal import withdraw_consent
from broker.oidc.grant_records import GrantRecord, put_grant_record
from broker.oidc.tokens import ACCESS_TOKEN_CACHE, InvalidToken, mint_access_token, verify_access_token
from broker.runtime import Runtime


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each cold signature check of an access token appends its token; the cache starts empty."""
    ACCESS_TOKEN_CACHE.clear()
    calls: list[str] = []
    real = tokens.verify_signed

    def counting(keyring: Any, settings: Any, token: str, typ: str, **kwargs: Any) -> dict[str, Any]:
        calls.append(token)
        return real(keyring, settings, token, typ, **kwargs)

    monkeypatch.setattr(tokens, "verify_signed", counting)
    yield calls
    ACCESS_TOKEN_CACHE.clear()


def _mint(rt: Runtime, now: int, grant: str = "grant-1", sub: str = "alice") -> str:
    token, _ = mint_access_token(
        rt.keyring, rt.settings, sub=sub, client_id="app", scope=("openid",), grant=grant, now=now
    )
    return token


def _verify(rt: Runtime) -> Callable[..., tokens.AccessToken]:
    def verify(token: str, now: int) -> tokens.AccessToken:
        return verify_access_token(rt.keyring, rt.settings, rt.store, token, now=now)

    return verify


def test_repeated_token_is_signature_checked_once(op_runtime: Runtime, signature_checks: list[str]) -> None:
    now = int(time.time())
    token, other = _mint(op_runtime, now), _mint(op_runtime, now, grant="grant-2")
    verify = _verify(op_runtime)
    first = verify(token, now)
    for step in range(5):
        again = verify(token, now + step)
        assert again == first
    assert signature_checks == [token]
    verify(other, now)
    verify(other, now)
    assert signature_checks == [token, other]


def test_cached_claims_cannot_be_changed_by_a_caller(op_runtime: Runtime, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_runtime, now)
    verify = _verify(op_runtime)
    verify(token, now).claims["sub"] = "mallory"
    assert verify(token, now).claims["sub"] == "alice"
    assert verify(token, now).sub == "alice"


def test_revoked_jti_after_caching_is_refused_at_next_call(op_runtime: Runtime, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_runtime, now)
    verify = _verify(op_runtime)
    at = verify(token, now)
    verify(token, now)
    op_runtime.store.revoke_token_id(at.jti, at.exp)
    with pytest.raises(InvalidToken) as refused:
        verify(token, now)
    assert refused.value.reason == "revoked"
    assert signature_checks == [token]  # refused from the cached signature: the store decided


def test_revoked_family_after_caching_is_refused_at_next_call(op_runtime: Runtime, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_runtime, now, grant="family-x")
    verify = _verify(op_runtime)
    verify(token, now)
    op_runtime.store.revoke_family("family-x")
    with pytest.raises(InvalidToken) as refused:
        verify(token, now)
    assert refused.value.reason == "revoked"


def test_consent_withdrawal_after_caching_is_refused_at_next_call(
    op_runtime: Runtime, signature_checks: list[str]
) -> None:
    now = int(time.time())
    token = _mint(op_runtime, now, grant="grant-c", sub="bob")
    put_grant_record(
        op_runtime.settings,
        op_runtime.store,
        GrantRecord(
            grant_id="grant-c",
            identity_id="bob",
            client_id="app",
            scope=("openid",),
            authorized_ms=now * 1000 - 1000,
            started_at=now - 1,
            expires_at=now + 3600,
        ),
    )
    verify = _verify(op_runtime)
    verify(token, now)
    withdraw_consent(op_runtime.settings, op_runtime.store, "bob", "app", at_ms=now * 1000)
    with pytest.raises(InvalidToken) as refused:
        verify(token, now)
    assert refused.value.reason == "revoked"


def test_expired_cached_token_is_refused(op_runtime: Runtime, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_runtime, now)
    verify = _verify(op_runtime)
    exp = verify(token, now).exp
    verify(token, exp - 1)
    assert signature_checks == [token]
    leeway = op_runtime.settings.limits.clock_leeway_seconds
    with pytest.raises(InvalidToken) as refused:
        verify(token, exp + leeway)
    assert refused.value.reason == "expired"
    verify(token, exp)  # within the leeway: still accepted, but never served from the cache past exp
    assert signature_checks == [token, token, token]


def test_cached_token_of_a_key_no_longer_published_is_refused(op_runtime: Runtime, signature_checks: list[str]) -> None:
    now = int(time.time())
    ring = op_runtime.keyring
    token = _mint(op_runtime, now)
    verify = _verify(op_runtime)
    verify(token, now)
    verify(token, now)
    old_kid = ring.signing_key(now).kid
    ring.rotate(now, immediate=True)
    ring.storage.delete(old_kid)  # what maintain() does once the key is past remove_after
    ring.reload()
    assert old_kid not in ring.public_keys()
    with pytest.raises(InvalidToken) as refused:
        verify(token, now)
    assert refused.value.reason == "key_not_found"
    fresh = _mint(op_runtime, now)
    verify(fresh, now)
    assert signature_checks == [token, token, fresh]


def test_cached_token_is_not_reused_for_another_issuer(op_runtime: Runtime, signature_checks: list[str]) -> None:
    from tests.support.settings import replace

    now = int(time.time())
    token = _mint(op_runtime, now)
    verify_access_token(op_runtime.keyring, op_runtime.settings, op_runtime.store, token, now=now)
    elsewhere = replace(op_runtime.settings, issuer="https://other.example/")
    with pytest.raises(InvalidToken) as refused:
        verify_access_token(op_runtime.keyring, elsewhere, op_runtime.store, token, now=now)
    assert refused.value.reason == "untrusted_issuer"


def test_failures_are_not_cached(op_runtime: Runtime, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_runtime, now)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    verify = _verify(op_runtime)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verify(tampered, now)
    assert signature_checks == [tampered, tampered]
    assert len(ACCESS_TOKEN_CACHE) == 0
