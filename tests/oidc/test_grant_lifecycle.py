"""How grants end: code races, idle and absolute refresh lifetimes, consent withdrawal, device polling.

These run the OP in this process against real stores (SQLite and Redis) and a real key ring,
with a clock the test moves, so days pass in milliseconds (THREAT-MODEL OA-16, OA-20 cases 5
and 6; RFC 8628 3.5).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from broker.oidc.passwords import token_hash
from broker.oidc.provider import OpenIDProvider
from broker.oidc.records import REVOKED_FAMILY
from broker.oidc.server import REFRESH_IDLE_SECONDS
from broker.oidc.tokens import InvalidToken
from tests.oidc.conftest import OpParts
from tests.oidc.inprocess import access_ok, call, code_for, error_of, redeem, refresh

DAY = 86400
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
RFC8628_SLOW_DOWN_SECONDS = 5  # "the interval MUST be increased by 5 seconds" (RFC 8628 3.5)


def test_oa16_a_loser_that_comes_before_the_winner_records_its_grant_still_revokes_it(
    op_parts: OpParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = op_parts.op
    code = code_for(op)
    real = op.repository.redeem_code
    loser: dict[str, str] = {}

    def winner_takes_then_a_loser_runs(code_hash: str, grant_id: str, until: int) -> Any:
        taken = real(code_hash, grant_id, until)  # the winner's atomic take ...
        monkeypatch.setattr(op.repository, "redeem_code", real)
        loser["error"] = error_of(redeem, op, code)  # ... a loser runs to the end before the winner goes on
        return taken

    monkeypatch.setattr(op.repository, "redeem_code", winner_takes_then_a_loser_runs)
    body = redeem(op, code)
    assert loser["error"] == "invalid_grant"
    assert body["access_token"] and not access_ok(op, body["access_token"])
    assert error_of(refresh, op, body["refresh_token"]) == "invalid_grant"


def test_oa15_a_loser_after_the_winner_revokes_its_grant(op_parts: OpParts) -> None:
    op = op_parts.op
    code = code_for(op)
    body = redeem(op, code)
    assert access_ok(op, body["access_token"])
    assert error_of(redeem, op, code) == "invalid_grant"
    assert not access_ok(op, body["access_token"])


def test_oa20_refresh_token_idle_lifetime(op_parts: OpParts) -> None:
    op, clock = op_parts.op, op_parts.clock
    body = redeem(op, code_for(op))
    clock.now += REFRESH_IDLE_SECONDS - 60
    used_in_time = refresh(op, body["refresh_token"])
    clock.now += REFRESH_IDLE_SECONDS + 1
    assert error_of(refresh, op, used_in_time["refresh_token"]) == "invalid_grant"


def test_oa20_refresh_token_absolute_lifetime(op_parts: OpParts) -> None:
    op, clock = op_parts.op, op_parts.clock
    start = int(clock.now)
    absolute = op.settings.refresh_token_lifetime_seconds
    assert absolute > REFRESH_IDLE_SECONDS  # otherwise the idle limit alone would end the grant
    body = redeem(op, code_for(op))
    while clock.now + REFRESH_IDLE_SECONDS - DAY < start + absolute:  # never idle for long
        clock.now += REFRESH_IDLE_SECONDS - DAY
        body = refresh(op, body["refresh_token"])
        record = op.repository.refresh_token(token_hash(str(body["refresh_token"])))
        assert record is not None and record.expires_at == min(start + absolute, int(clock.now) + REFRESH_IDLE_SECONDS)
    clock.now = start + absolute
    assert error_of(refresh, op, body["refresh_token"]) == "invalid_grant"


def test_oa20_refused_scope_does_not_burn_the_refresh_token(op_parts: OpParts) -> None:
    op = op_parts.op
    body = redeem(op, code_for(op))
    assert error_of(refresh, op, body["refresh_token"], scope="openid email") == "invalid_scope"
    narrowed = refresh(op, body["refresh_token"], scope="openid")
    assert narrowed["scope"] == "openid" and narrowed["refresh_token"]


def test_oa20_refresh_after_consent_withdrawal_fails_and_ends_the_grant(op_parts: OpParts) -> None:
    op = op_parts.op
    now = op.now()
    op.consents.remember("alice-id", "app", ("openid",), now)
    mine = redeem(op, code_for(op))
    pending_code = code_for(op)  # authorized before the withdrawal, not yet redeemed
    other_client = redeem(op, code_for(op, client_id="other"), client_id="other")
    other_user = redeem(op, code_for(op, identity_id="bob-id"))
    time.sleep(0.003)
    assert op.consents.withdraw("alice-id", "app") is True
    assert op.consents.get("alice-id", "app") is None
    assert error_of(refresh, op, mine["refresh_token"]) == "invalid_grant"
    assert not access_ok(op, mine["access_token"])
    assert error_of(redeem, op, pending_code) == "invalid_grant"
    # An access token whose grant has no record is refused while a withdrawal is on file (fail closed).
    unrecorded, _ = op.tokens.mint(sub="alice-id", client_id="app", scope=("openid",), grant="not-recorded", now=now)
    assert not access_ok(op, unrecorded)
    # Other clients and other researchers keep their grants.
    assert access_ok(op, other_client["access_token"]) and access_ok(op, other_user["access_token"])
    assert refresh(op, other_client["refresh_token"], client_id="other")["access_token"]
    assert refresh(op, other_user["refresh_token"])["access_token"]
    # Consenting again gives a grant that works.
    time.sleep(0.003)
    again = redeem(op, code_for(op))
    assert access_ok(op, again["access_token"]) and refresh(op, again["refresh_token"])["access_token"]
    assert any(r.event.get("event") == "oidc.consent_withdrawn" for r in op_parts.kernel.audit_records())


def test_oa20_a_grant_racing_a_withdrawal_is_refused_or_ended(op_parts: OpParts) -> None:
    """Whichever commits first, no token of a grant authorized before an acknowledged withdrawal works."""
    op = op_parts.op
    codes = [code_for(op) for _ in range(6)]
    results: list[dict[str, Any] | str] = []
    barrier = threading.Barrier(len(codes) + 1)

    def redeem_one(code: str) -> None:
        barrier.wait()
        try:
            results.append(redeem(op, code))
        except Exception as exc:
            results.append(getattr(exc, "code", repr(exc)))

    threads = [threading.Thread(target=redeem_one, args=(c,)) for c in codes]
    for t in threads:
        t.start()
    barrier.wait()
    assert op.consents.withdraw("alice-id", "app") is False  # acknowledged here
    for t in threads:
        t.join()
    for result in results:
        if isinstance(result, dict):
            assert not access_ok(op, result["access_token"])
            assert error_of(refresh, op, result["refresh_token"]) == "invalid_grant"
        else:
            assert result == "invalid_grant"


def test_rfc8628_each_slow_down_adds_five_seconds_to_the_interval(op_parts: OpParts) -> None:
    op, clock = op_parts.op, op_parts.clock
    start = int(clock.now)
    grant = call(op, "/device_authorization", {"client_id": "cli"}, client_id=None)
    device_code = str(grant["device_code"])
    interval = op.settings.device_poll_interval_seconds

    def poll(at: int) -> str:
        clock.now = at
        return error_of(
            call, op, "/token", {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": "cli"}, None
        )

    assert poll(start) == "authorization_pending"
    last, now = start, start + 1
    for _ in range(4):
        assert poll(now) == "slow_down"
        interval += RFC8628_SLOW_DOWN_SECONDS
        last = now
        # One second short of the new interval: allowed by the old one, refused by this one.
        now = last + interval - 1
    assert poll(last + interval) == "authorization_pending"


def test_oa33_issued_tokens_never_reach_the_log_even_at_debug(
    op_parts: OpParts, caplog: pytest.LogCaptureFixture
) -> None:
    """authlib logs the tokens it issues at DEBUG; the OP keeps it at INFO whatever the root level."""
    caplog.set_level(logging.DEBUG)
    op = op_parts.op
    code = code_for(op)
    body = redeem(op, code)
    refreshed = refresh(op, body["refresh_token"])
    logging.getLogger("broker.probe").debug("probe")
    assert "probe" in caplog.text  # the log does run at DEBUG
    for secret in (code, body["access_token"], body["refresh_token"], body["id_token"], refreshed["access_token"]):
        assert str(secret) not in caplog.text


def test_oa20_refresh_retry_within_the_grace_period_returns_the_same_successor(op_parts: OpParts) -> None:
    """Issue 11 item 9: a refresh whose answer was lost is retried; it gets the same successor, no revocation.
    Once the successor is used, or after the grace period, presenting the old token again is reuse."""
    op, clock = op_parts.op, op_parts.clock
    grace = op.settings.refresh_retry_grace_seconds
    first = redeem(op, code_for(op))
    answered = refresh(op, first["refresh_token"])  # the client never saw this answer (503, lost)
    clock.now += grace - 1
    retried = refresh(op, first["refresh_token"])
    assert retried["refresh_token"] == answered["refresh_token"]
    assert retried["access_token"] != answered["access_token"]
    onward = refresh(op, retried["refresh_token"])  # the chain goes on from the one successor
    # now the successor is used: the old token again is reuse, and ends the grant
    assert error_of(refresh, op, first["refresh_token"]) == "invalid_grant"
    assert error_of(refresh, op, onward["refresh_token"]) == "invalid_grant"
    # after the grace period, even with the successor unused, it is reuse too
    second = redeem(op, code_for(op))
    successor = refresh(op, second["refresh_token"])["refresh_token"]
    clock.now += grace + 1
    assert error_of(refresh, op, second["refresh_token"]) == "invalid_grant"
    assert error_of(refresh, op, successor) == "invalid_grant"
    # and a retry by another client is never one
    third = redeem(op, code_for(op))
    refresh(op, third["refresh_token"])
    assert error_of(refresh, op, third["refresh_token"], client_id="other") == "invalid_grant"


def test_ga09_revoked_grant_marker_outlives_the_longest_access_token(op_parts: OpParts) -> None:
    """Issue 11 item 4: with access tokens configured for 24 h, a revoked family stays marked until the last
    access token it can have produced expires (it used to be max(refresh exp, now + 3600))."""
    base = op_parts.op
    day = 86400
    settings = base.settings.model_copy(update={"access_token_lifetime_seconds": day})
    op = OpenIDProvider(
        settings=settings,
        issuer=base.issuer,
        kernel=op_parts.kernel,
        keys=base.keys,
        identities=base.identities,
        sessions=base.sessions,
        visas_for=lambda identity_id: [],
        leeway=60,
        max_json_depth=16,
        interaction_lifetime_seconds=600,
    )
    now = int(time.time())
    token, claims = op.tokens.mint(sub="alice-id", client_id="app", scope=("openid",), grant="g-long", now=now)
    op.repository.revoke_family("g-long")
    marker = op_parts.kernel.get(REVOKED_FAMILY, "g-long")
    assert marker is not None and int(marker["until"]) >= claims.exp
    with pytest.raises(InvalidToken):
        op.tokens.verify(token)
