"""The authorization_code and refresh_token grants (RFC 6749 4.1.3, 6; RFC 9700 4.14).

Codes are single-use through the store's atomic ``consume_ticket``. A second redemption of
a code revokes the grant the first one started (access tokens and refresh-token family) and
fails (RFC 6749 4.1.2, THREAT-MODEL OA-15), however close together the two arrive (OA-16).
Two markers make that hold without a lock: the winner writes ``code_used`` (naming its new
grant) and then looks for ``code_reused``; a loser looks for ``code_used``, and if it is not
there yet writes ``code_reused`` and looks again. Whatever the interleaving, one of them sees
the other's marker, and the grant is revoked; a family revoked before its first refresh
token exists keeps no tokens (the store's "revoked at birth"). The winner still gets its
``200`` (with tokens that are already dead), so exactly one redemption succeeds.

Refresh tokens rotate on every use. ``use_refresh_token`` marks a token used atomically and
returns its state from before, so a second use of the same token, by anyone, is detected:
the whole family is revoked (RFC 9700 4.14.2) and the access tokens of the grant die with
it (they carry the family id as ``grant``). A refresh token lives at most
:data:`REFRESH_IDLE_SECONDS` unused, and never past the grant's absolute end
(``oidc.refresh_token_lifetime_seconds`` from the grant's start); a refresh after consent
withdrawal fails and revokes the family (OA-20 cases 5, 6).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from broker.oidc.authorize import CODE
from broker.oidc.client_auth import AuthenticatedClient
from broker.oidc.consent_withdrawal import authorization_withdrawn
from broker.oidc.errors import OAuthError
from broker.oidc.grant_records import GrantRecord, get_grant_record, put_grant_record
from broker.oidc.params import scope_list
from broker.oidc.passwords import token_hash
from broker.oidc.pkce import valid_verifier, verifier_matches
from broker.oidc.tokens import mint_access_token, mint_id_token, new_id
from broker.runtime import Runtime
from broker.store.base import RefreshToken

CODE_USED = "code_used"
CODE_REUSED = "code_reused"
REFRESH_OWNER = "refresh_owner"
# A refresh token not used for this long stops working (idle lifetime; OA-20 case 6).
REFRESH_IDLE_SECONDS = 7 * 86400


@dataclass(frozen=True)
class RefreshOwner:
    """The read-only facts of one refresh token, for introspection and revocation.

    The store's only refresh-token lookup (``use_refresh_token``) marks the token used, so
    these are kept beside it in the ticket space, keyed by the token's hash.
    """

    grant: str
    client_id: str
    identity_id: str
    scope: tuple[str, ...]
    issued_at: int
    expires_at: int
    rotated: bool


def refresh_owner(rt: Runtime, presented: str) -> RefreshOwner | None:
    """The facts of a refresh token we issued (rotated or not), or None."""
    data = rt.store.peek_ticket(REFRESH_OWNER, token_hash(presented))
    if data is None:
        return None
    try:
        return RefreshOwner(
            grant=str(data["grant"]),
            client_id=str(data["client_id"]),
            identity_id=str(data["identity_id"]),
            scope=tuple(str(s) for s in data["scope"]),
            issued_at=int(data["issued_at"]),
            expires_at=int(data["expires_at"]),
            rotated=bool(data.get("rotated", False)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _put_owner(rt: Runtime, presented_hash: str, owner: RefreshOwner, now: int) -> None:
    rt.store.put_ticket(
        REFRESH_OWNER,
        presented_hash,
        {
            "grant": owner.grant,
            "client_id": owner.client_id,
            "identity_id": owner.identity_id,
            "scope": list(owner.scope),
            "issued_at": owner.issued_at,
            "expires_at": owner.expires_at,
            "rotated": owner.rotated,
        },
        max(1, owner.expires_at - now),
    )


def live_refresh_token(rt: Runtime, presented: str, client_id: str, now: int) -> RefreshOwner | None:
    """A refresh token of ``client_id`` that a refresh would accept now (no side effects), or None."""
    owner = refresh_owner(rt, presented)
    if owner is None or owner.client_id != client_id or owner.rotated or owner.expires_at <= now:
        return None
    grant = get_grant_record(rt.store, owner.grant)
    if grant is None or grant.expires_at <= now or rt.store.family_revoked(owner.grant):
        return None
    if authorization_withdrawn(rt.store, grant.identity_id, grant.client_id, grant.authorized_ms):
        return None
    return owner


def _tokens(
    rt: Runtime, grant: GrantRecord, scope: tuple[str, ...], now: int, *, with_refresh: bool, idp: str | None = None
) -> dict[str, Any]:
    """An access token with ``scope`` and, if asked, a new refresh token of the grant's full scope."""
    access, claims = mint_access_token(
        rt.keyring,
        rt.settings,
        sub=grant.identity_id,
        client_id=grant.client_id,
        scope=scope,
        grant=grant.grant_id,
        now=now,
        idp=idp,
    )
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": claims.exp - now,
        "scope": " ".join(scope),
    }
    if with_refresh:
        refresh = secrets.token_urlsafe(32)
        expires_at = min(grant.expires_at, now + REFRESH_IDLE_SECONDS)
        rt.store.put_refresh_token(
            RefreshToken(
                token_hash=token_hash(refresh),
                family_id=grant.grant_id,
                identity_id=grant.identity_id,
                client_id=grant.client_id,
                scope=" ".join(grant.scope),
                issued_at=now,
                expires_at=expires_at,
            )
        )
        _put_owner(
            rt,
            token_hash(refresh),
            RefreshOwner(
                grant=grant.grant_id,
                client_id=grant.client_id,
                identity_id=grant.identity_id,
                scope=grant.scope,
                issued_at=now,
                expires_at=expires_at,
                rotated=False,
            ),
            now,
        )
        body["refresh_token"] = refresh
    return body


def new_grant(
    rt: Runtime,
    client_id: str,
    identity_id: str,
    scope: tuple[str, ...],
    authorized_ms: int,
    now: int,
    grant_id: str | None = None,
) -> GrantRecord:
    """Record a grant that starts now; refused if consent was withdrawn since it was authorized."""
    if authorization_withdrawn(rt.store, identity_id, client_id, authorized_ms):
        raise OAuthError("invalid_grant", "The researcher withdrew consent for this client.")
    grant = GrantRecord(
        grant_id=grant_id or new_id(),
        identity_id=identity_id,
        client_id=client_id,
        scope=scope,
        authorized_ms=authorized_ms,
        started_at=now,
        expires_at=now + rt.settings.oidc.refresh_token_lifetime_seconds,
    )
    put_grant_record(rt.settings, rt.store, grant)
    return grant


def issue_tokens(
    rt: Runtime,
    auth: AuthenticatedClient,
    grant: GrantRecord,
    now: int,
    *,
    auth_time: int,
    nonce: str | None = None,
    idp: str | None = None,
) -> dict[str, Any]:
    """The token response of a new grant: access token, refresh token (if the client may) and ID token."""
    body = _tokens(rt, grant, grant.scope, now, with_refresh="refresh_token" in auth.client.grant_types, idp=idp)
    if "openid" in grant.scope:
        body["id_token"] = mint_id_token(
            rt.keyring,
            rt.settings,
            sub=grant.identity_id,
            client_id=grant.client_id,
            auth_time=auth_time,
            now=now,
            nonce=nonce,
            access_token=body["access_token"],
        )
    return body


def _revoke_redeemed(rt: Runtime, grant_id: str, client_id: str, now: int) -> None:
    rt.store.revoke_family(grant_id)
    rt.store.audit_append({"event": "oidc.code_reuse", "client_id": client_id, "grant": grant_id}, now)


def _second_redemption(rt: Runtime, key: str, client_id: str, now: int) -> None:
    """A code that is gone was presented: if it was redeemed (or is being redeemed), revoke that grant."""
    used = rt.store.peek_ticket(CODE_USED, key)
    if used is None:
        # Perhaps the winner has consumed the code but not yet written code_used: leave a
        # marker it will see, then look once more (see the module docstring).
        rt.store.put_ticket(CODE_REUSED, key, {}, rt.settings.oidc.code_lifetime_seconds)
        used = rt.store.peek_ticket(CODE_USED, key)
    if used is not None and isinstance(used.get("grant"), str):
        _revoke_redeemed(rt, used["grant"], client_id, now)


def authorization_code(rt: Runtime, auth: AuthenticatedClient, form: dict[str, str], now: int) -> dict[str, Any]:
    code = form.get("code")
    if not code:
        raise OAuthError("invalid_request", "code is required.")
    key = token_hash(code)
    record = rt.store.consume_ticket(CODE, key)
    if record is None:
        _second_redemption(rt, key, auth.client.client_id, now)
        raise OAuthError("invalid_grant", "The code is invalid, expired or already used.")
    return redeem_consumed_code(rt, auth, form, key, record, now)


def redeem_consumed_code(
    rt: Runtime, auth: AuthenticatedClient, form: dict[str, str], key: str, record: dict[str, Any], now: int
) -> dict[str, Any]:
    """Everything after the atomic consume of the code (hash ``key``, stored ``record``): checks, then tokens."""
    if record["client_id"] != auth.client.client_id:
        raise OAuthError("invalid_grant", "The code was issued to another client.")
    if form.get("redirect_uri") != record["redirect_uri"]:
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request.")
    verifier = form.get("code_verifier")
    challenge = record.get("code_challenge")
    if challenge:
        if verifier is None:
            raise OAuthError("invalid_grant", "code_verifier is required.")
        if not valid_verifier(verifier) or not verifier_matches(verifier, challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code challenge.")
    elif verifier is not None:
        raise OAuthError("invalid_grant", "code_verifier sent but the authorization request had no challenge.")
    grant_id = new_id()
    rt.store.put_ticket(CODE_USED, key, {"grant": grant_id}, rt.settings.oidc.refresh_token_lifetime_seconds)
    if rt.store.peek_ticket(CODE_REUSED, key) is not None:
        _revoke_redeemed(rt, grant_id, auth.client.client_id, now)
    grant = new_grant(
        rt,
        auth.client.client_id,
        record["identity_id"],
        tuple(record["scope"]),
        int(record.get("issued_ms", 0)),
        now,
        grant_id=grant_id,
    )
    return issue_tokens(
        rt, auth, grant, now, auth_time=record["auth_time"], nonce=record.get("nonce"), idp=record.get("idp")
    )


def refresh_token(rt: Runtime, auth: AuthenticatedClient, form: dict[str, str], now: int) -> dict[str, Any]:
    presented = form.get("refresh_token")
    if not presented:
        raise OAuthError("invalid_request", "refresh_token is required.")
    # Check the scope before the token is marked used, so a refused scope does not burn it.
    owner = refresh_owner(rt, presented)
    requested = scope_list(form.get("scope"))
    if owner is not None and owner.client_id == auth.client.client_id and not set(requested) <= set(owner.scope):
        raise OAuthError("invalid_scope", "A refresh cannot add scopes.")
    presented_hash = token_hash(presented)
    old = rt.store.use_refresh_token(presented_hash)
    if old is None:
        raise OAuthError("invalid_grant", "The refresh token is invalid or expired.")
    if old.used:
        rt.store.revoke_family(old.family_id)
        rt.store.audit_append({"event": "oidc.refresh_reuse", "client_id": old.client_id, "grant": old.family_id}, now)
        raise OAuthError("invalid_grant", "The refresh token was already used; its grant is revoked.")
    if old.client_id != auth.client.client_id:
        rt.store.revoke_family(old.family_id)
        raise OAuthError("invalid_grant", "The refresh token was issued to another client.")
    if rt.store.family_revoked(old.family_id) or old.expires_at <= now:
        raise OAuthError("invalid_grant", "The refresh token is revoked or expired.")
    grant = get_grant_record(rt.store, old.family_id)
    if grant is None or grant.expires_at <= now:
        raise OAuthError("invalid_grant", "The grant of this refresh token has ended.")
    if authorization_withdrawn(rt.store, grant.identity_id, grant.client_id, grant.authorized_ms):
        rt.store.revoke_family(grant.grant_id)
        raise OAuthError("invalid_grant", "The researcher withdrew consent for this client.")
    granted = tuple(old.scope.split())
    requested = requested or granted
    if not set(requested) <= set(granted):
        raise OAuthError("invalid_scope", "A refresh cannot add scopes.")
    body = _tokens(rt, grant, requested, now, with_refresh=True)
    if owner is not None:
        _put_owner(rt, presented_hash, replace(owner, rotated=True), now)
    return body
