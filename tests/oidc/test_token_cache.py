"""The access-token signature cache: a repeated token skips the signature check, nothing else.

Every test runs against a real store (sqlite and redis, through ``op_parts``) and a real key
ring; signature checks are counted by wrapping the OP's ``AccessTokens.verify_signed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broker.oidc.records import OAuthGrant
from broker.oidc.tokens import AccessToken, AccessTokens, InvalidToken
from tests.oidc.conftest import OpParts


@pytest.fixture
def signature_checks(op_parts: OpParts, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each cold signature check of an access token appends its token; the cache starts empty."""
    tokens = op_parts.op.tokens
    tokens.cache.clear()
    calls: list[str] = []
    real = tokens.verify_signed

    def counting(token: str, typ: str, **kwargs: Any) -> dict[str, Any]:
        calls.append(token)
        return real(token, typ, **kwargs)

    monkeypatch.setattr(tokens, "verify_signed", counting)
    yield calls
    tokens.cache.clear()


def _mint(parts: OpParts, now: int, grant: str = "grant-1", sub: str = "alice") -> str:
    token, _ = parts.op.tokens.mint(sub=sub, client_id="app", scope=("openid",), grant=grant, now=now)
    return token


def _verify(parts: OpParts) -> Callable[..., AccessToken]:
    def verify(token: str, now: int) -> AccessToken:
        return parts.op.tokens.verify(token, now=now)

    return verify


def test_repeated_token_is_signature_checked_once(op_parts: OpParts, signature_checks: list[str]) -> None:
    now = int(time.time())
    token, other = _mint(op_parts, now), _mint(op_parts, now, grant="grant-2")
    verify = _verify(op_parts)
    first = verify(token, now)
    for step in range(5):
        again = verify(token, now + step)
        assert again == first
    assert signature_checks == [token]
    verify(other, now)
    verify(other, now)
    assert signature_checks == [token, other]


def test_cached_claims_cannot_be_changed_by_a_caller(op_parts: OpParts, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_parts, now)
    verify = _verify(op_parts)
    verify(token, now).claims["sub"] = "mallory"
    assert verify(token, now).claims["sub"] == "alice"
    assert verify(token, now).sub == "alice"


def test_revoked_jti_after_caching_is_refused_at_next_call(op_parts: OpParts, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_parts, now)
    verify = _verify(op_parts)
    at = verify(token, now)
    verify(token, now)
    op_parts.op.repository.revoke_jti(at.jti, at.exp)
    with pytest.raises(InvalidToken) as refused:
        verify(token, now)
    assert refused.value.reason == "revoked"
    assert signature_checks == [token]  # refused from the cached signature: the store decided


def test_revoked_family_after_caching_is_refused_at_next_call(op_parts: OpParts, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_parts, now, grant="family-x")
    verify = _verify(op_parts)
    verify(token, now)
    op_parts.op.repository.revoke_family("family-x")
    with pytest.raises(InvalidToken) as refused:
        verify(token, now)
    assert refused.value.reason == "revoked"


def test_consent_withdrawal_after_caching_is_refused_at_next_call(
    op_parts: OpParts, signature_checks: list[str]
) -> None:
    now = int(time.time())
    token = _mint(op_parts, now, grant="grant-c", sub="bob")
    op_parts.op.repository.grants.put(
        OAuthGrant(
            grant_id="grant-c",
            identity_id="bob",
            client_id="app",
            scope=("openid",),
            authorized_ms=now * 1000 - 1000,
            started_at=now - 1,
            expires_at=now + 3600,
            keep_until=now + 7200,
        )
    )
    verify = _verify(op_parts)
    verify(token, now)
    op_parts.op.consents.withdraw("bob", "app", at_ms=now * 1000)
    with pytest.raises(InvalidToken) as refused:
        verify(token, now)
    assert refused.value.reason == "revoked"


def test_expired_cached_token_is_refused(op_parts: OpParts, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_parts, now)
    verify = _verify(op_parts)
    exp = verify(token, now).exp
    verify(token, exp - 1)
    assert signature_checks == [token]
    leeway = op_parts.settings.limits.clock_leeway_seconds
    with pytest.raises(InvalidToken) as refused:
        verify(token, exp + leeway)
    assert refused.value.reason == "expired"
    verify(token, exp)  # within the leeway: still accepted, but never served from the cache past exp
    assert signature_checks == [token, token, token]


def test_cached_token_of_a_key_no_longer_published_is_refused(op_parts: OpParts, signature_checks: list[str]) -> None:
    now = int(time.time())
    ring = op_parts.op.keys
    token = _mint(op_parts, now)
    verify = _verify(op_parts)
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
    fresh = _mint(op_parts, now)
    verify(fresh, now)
    assert signature_checks == [token, token, fresh]


def test_cached_token_is_not_reused_for_another_issuer(op_parts: OpParts, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_parts, now)
    ours = op_parts.op.tokens
    ours.verify(token, now=now)
    elsewhere = AccessTokens(
        issuer="https://other.example/",
        settings=ours.settings,
        keys=ours.keys,
        repository=ours.repository,
        leeway=ours.leeway,
        max_json_depth=ours.max_json_depth,
        cache=ours.cache,
    )
    with pytest.raises(InvalidToken) as refused:
        elsewhere.verify(token, now=now)
    assert refused.value.reason == "untrusted_issuer"


def test_failures_are_not_cached(op_parts: OpParts, signature_checks: list[str]) -> None:
    now = int(time.time())
    token = _mint(op_parts, now)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    verify = _verify(op_parts)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verify(tampered, now)
    assert signature_checks == [tampered, tampered]
    assert len(op_parts.op.tokens.cache) == 0
