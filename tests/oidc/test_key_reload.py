"""Issue 11 item 9: after ``keys rotate --immediate`` in another process, a token signed by the new key is
accepted at once: an unknown kid of our own issuer makes the ring reload, at most once per interval."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.container import own_keys_of
from broker.keys import ring as ring_module
from broker.keys.settings import KeySettings
from broker.oidc.repository import OidcRepository
from broker.oidc.settings import OidcSettings
from broker.oidc.tokens import AccessTokens, mint_access_token
from broker.settings import Settings
from broker.store.settings import StoreSettings
from tests.support.keys import open_ring
from tests.support.legacy_store import open_store

ISSUER = "https://op.example/"


def test_unknown_kid_of_our_issuer_reloads_the_key_ring_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        issuer=ISSUER,
        data_dir=str(tmp_path / "var"),
        store=StoreSettings(backend="sqlite"),
        keys=KeySettings(rotate_every_days=0),
        oidc=OidcSettings(),
    )
    store = open_store(settings)
    try:
        operator = open_ring(settings, store, auto_maintain_seconds=None)
        operator.maintain()
        # the serving process: it would read the key directory only once an hour on its own
        serving = open_ring(settings, store, auto_maintain_seconds=None, refresh_seconds=3600)
        old_kid = next(iter(serving.public_keys()))
        new_kid = operator.rotate(immediate=True).kid
        assert new_kid not in serving.public_keys()  # no reload without a reason
        token, _ = mint_access_token(
            operator, settings, sub="alice", client_id="app", scope=("openid",), grant="g1", now=int(time.time())
        )
        repository = OidcRepository(store.kernel, family_marker_seconds=3600)
        tokens = AccessTokens(
            issuer=ISSUER, settings=settings.oidc, keys=serving, repository=repository, leeway=5, max_json_depth=16
        )
        claims = tokens.verify_signed(token, "at+jwt")  # the unknown kid made it reload
        assert claims["sub"] == "alice"
        assert {old_kid, new_kid} <= set(serving.public_keys())
        # the trust side (passports and visas of our own issuer) takes the same path
        third = open_ring(settings, store, auto_maintain_seconds=None, refresh_seconds=3600)
        assert new_kid in third.public_keys(kid=new_kid)
        # rate-limited: one forced reload per interval, whatever kids are asked for (the interval is
        # stretched here so that a busy machine cannot end it between two lines)
        monkeypatch.setattr(ring_module, "UNKNOWN_KID_RELOAD_SECONDS", 3600.0)
        third.public_keys(kid="made-up")  # the interval's one reload
        newest = operator.rotate(immediate=True).kid
        assert newest not in third.public_keys(kid=newest)  # within the interval: no storage read
        monkeypatch.setattr(ring_module, "UNKNOWN_KID_RELOAD_SECONDS", 0.0)
        assert own_keys_of(third)()[newest].kid == newest  # the interval over: the trust side's lookup reloads
    finally:
        store.close()
