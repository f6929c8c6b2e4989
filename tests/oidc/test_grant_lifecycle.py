"""How grants end: code races, idle and absolute refresh lifetimes, consent withdrawal, device polling.

These run the OP's grant code in this process against real stores (SQLite and Redis) and a
real key ring, with the clock handed in, so days pass in milliseconds (THREAT-MODEL OA-16,
OA-20 cases 5 and 6; RFC 8628 3.5).
"""

from __future__ import annotations

import time

import pytest

from broker.oidc import grants
from broker.oidc.authorize import CODE, store_code
from broker.oidc.client_auth import AuthenticatedClient
from broker.oidc.consent_withdrawal import withdraw_consent
from broker.oidc.device import redeem, start_device_authorization
from broker.oidc.errors import OAuthError
from broker.oidc.grants import REFRESH_IDLE_SECONDS
from broker.oidc.passwords import token_hash
from broker.oidc.tokens import InvalidToken, mint_access_token, verify_access_token
from broker.runtime import Runtime
from broker.store.base import Client, Consent

DAY = 86400
CALLBACK = "https://app.example/cb"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
RFC8628_SLOW_DOWN_SECONDS = 5  # "the interval MUST be increased by 5 seconds" (RFC 8628 3.5)


def _auth(client_id: str = "app") -> AuthenticatedClient:
    return AuthenticatedClient(
        Client(
            client_id=client_id,
            name=client_id,
            redirect_uris=(CALLBACK,),
            grant_types=("authorization_code", "refresh_token", DEVICE_GRANT),
        ),
        "client_secret_basic",
    )


def _code(rt: Runtime, client_id: str = "app", identity_id: str = "alice-id") -> str:
    return store_code(
        rt,
        client_id=client_id,
        redirect_uri=CALLBACK,
        scope=["openid"],
        identity_id=identity_id,
        auth_time=int(time.time()),
    )


def _redeem(rt: Runtime, code: str, now: int, client_id: str = "app") -> dict[str, object]:
    return grants.authorization_code(rt, _auth(client_id), {"code": code, "redirect_uri": CALLBACK}, now)


def _refresh(rt: Runtime, token: object, now: int, client_id: str = "app") -> dict[str, object]:
    return grants.refresh_token(rt, _auth(client_id), {"refresh_token": str(token)}, now)


def _error(call: object, *args: object) -> str:
    with pytest.raises(OAuthError) as raised:
        call(*args)  # type: ignore[operator]
    return raised.value.error


def _access_ok(rt: Runtime, token: object) -> bool:
    try:
        verify_access_token(rt.keyring, rt.settings, rt.store, str(token))
    except InvalidToken:
        return False
    return True


def test_oa16_a_loser_that_comes_before_the_winner_records_its_grant_still_revokes_it(op_runtime: Runtime) -> None:
    rt = op_runtime
    now = int(time.time())
    code = _code(rt)
    key = token_hash(code)
    record = rt.store.consume_ticket(CODE, key)  # the winner's atomic consume ...
    assert record is not None
    assert _error(_redeem, rt, code, now) == "invalid_grant"  # ... a loser runs to the end before it goes on
    body = grants.redeem_consumed_code(rt, _auth(), {"code": code, "redirect_uri": CALLBACK}, key, record, now)
    assert body["access_token"] and not _access_ok(rt, body["access_token"])
    assert _error(_refresh, rt, body["refresh_token"], now) == "invalid_grant"


def test_oa15_a_loser_after_the_winner_revokes_its_grant(op_runtime: Runtime) -> None:
    rt = op_runtime
    now = int(time.time())
    code = _code(rt)
    body = _redeem(rt, code, now)
    assert _access_ok(rt, body["access_token"])
    assert _error(_redeem, rt, code, now) == "invalid_grant"
    assert not _access_ok(rt, body["access_token"])


def test_oa20_refresh_token_idle_lifetime(op_runtime: Runtime) -> None:
    rt = op_runtime
    start = int(time.time())
    body = _redeem(rt, _code(rt), start)
    used_in_time = _refresh(rt, body["refresh_token"], start + REFRESH_IDLE_SECONDS - 60)
    last_use = start + REFRESH_IDLE_SECONDS - 60
    assert _error(_refresh, rt, used_in_time["refresh_token"], last_use + REFRESH_IDLE_SECONDS + 1) == "invalid_grant"


def test_oa20_refresh_token_absolute_lifetime(op_runtime: Runtime) -> None:
    rt = op_runtime
    start = int(time.time())
    absolute = rt.settings.oidc.refresh_token_lifetime_seconds
    assert absolute > REFRESH_IDLE_SECONDS  # otherwise the idle limit alone would end the grant
    body = _redeem(rt, _code(rt), start)
    now = start
    while now + REFRESH_IDLE_SECONDS - DAY < start + absolute:  # never idle for long
        now += REFRESH_IDLE_SECONDS - DAY
        body = _refresh(rt, body["refresh_token"], now)
        owner = grants.refresh_owner(rt, str(body["refresh_token"]))
        assert owner is not None and owner.expires_at == min(start + absolute, now + REFRESH_IDLE_SECONDS)
    assert _error(_refresh, rt, body["refresh_token"], start + absolute) == "invalid_grant"


def test_oa20_refused_scope_does_not_burn_the_refresh_token(op_runtime: Runtime) -> None:
    rt = op_runtime
    now = int(time.time())
    body = _redeem(rt, _code(rt), now)
    with pytest.raises(OAuthError) as raised:
        grants.refresh_token(rt, _auth(), {"refresh_token": str(body["refresh_token"]), "scope": "openid email"}, now)
    assert raised.value.error == "invalid_scope"
    narrowed = grants.refresh_token(rt, _auth(), {"refresh_token": str(body["refresh_token"]), "scope": "openid"}, now)
    assert narrowed["scope"] == "openid" and narrowed["refresh_token"]


def test_oa20_refresh_after_consent_withdrawal_fails_and_ends_the_grant(op_runtime: Runtime) -> None:
    rt = op_runtime
    now = int(time.time())
    rt.store.put_consent(Consent(identity_id="alice-id", client_id="app", scopes=("openid",), granted_at=now))
    mine = _redeem(rt, _code(rt), now)
    pending_code = _code(rt)  # authorized before the withdrawal, not yet redeemed
    other_client = _redeem(rt, _code(rt, client_id="other"), now, client_id="other")
    other_user = _redeem(rt, _code(rt, identity_id="bob-id"), now)
    time.sleep(0.003)
    assert withdraw_consent(rt.settings, rt.store, "alice-id", "app") is True
    assert rt.store.get_consent("alice-id", "app") is None
    assert _error(_refresh, rt, mine["refresh_token"], now) == "invalid_grant"
    assert not _access_ok(rt, mine["access_token"])
    assert _error(_redeem, rt, pending_code, now) == "invalid_grant"
    # An access token whose grant has no record is refused while a withdrawal is on file (fail closed).
    unrecorded, _ = mint_access_token(
        rt.keyring, rt.settings, sub="alice-id", client_id="app", scope=("openid",), grant="not-recorded", now=now
    )
    assert not _access_ok(rt, unrecorded)
    # Other clients and other researchers keep their grants.
    assert _access_ok(rt, other_client["access_token"]) and _access_ok(rt, other_user["access_token"])
    assert _refresh(rt, other_client["refresh_token"], now, client_id="other")["access_token"]
    assert _refresh(rt, other_user["refresh_token"], now)["access_token"]
    # Consenting again gives a grant that works.
    time.sleep(0.003)
    again = _redeem(rt, _code(rt), now)
    assert _access_ok(rt, again["access_token"]) and _refresh(rt, again["refresh_token"], now)["access_token"]
    assert any(r.event.get("event") == "oidc.consent_withdrawn" for r in rt.store.audit_records())


def test_rfc8628_each_slow_down_adds_five_seconds_to_the_interval(op_runtime: Runtime) -> None:
    rt = op_runtime
    start = int(time.time())
    client = _auth("cli").client
    device_code = str(start_device_authorization(rt, client, ("openid",), start)["device_code"])
    interval = rt.settings.oidc.device_poll_interval_seconds

    def poll(at: int) -> str:
        return _error(redeem, rt, _auth("cli"), {"device_code": device_code}, at)

    assert poll(start) == "authorization_pending"
    last, now = start, start + 1
    for _ in range(4):
        assert poll(now) == "slow_down"
        interval += RFC8628_SLOW_DOWN_SECONDS
        last = now
        # One second short of the new interval: allowed by the old one, refused by this one.
        now = last + interval - 1
    assert poll(last + interval) == "authorization_pending"
