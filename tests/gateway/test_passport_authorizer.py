"""Layer 2: the gateway deciding with the real parts. Passports signed by a trusted broker
and verified by the GA4GH engine, our own access tokens (real key ring and store), the
policy engine on a policy directory, all over real HTTP through the gateway."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.core.policy.reload import PolicyStore
from broker.core.verify import Verifier
from broker.gateway.decision_cache import DecisionCache
from broker.gateway.drs import encode_object_id
from broker.gateway.passport_authorizer import PassportAuthorizer
from broker.gateway.paths import ObjectRef
from broker.settings import Settings
from tests.gateway.conftest import Stack
from tests.gateway.support import ServerThread, build_app
from tests.support.forge import NOW, Signer, TestKey, make_verifier, trust_config, visa_object
from tests.support.keys import open_ring
from tests.support.settings import replace

DAC = "https://dac.example/"
POLICY = f"""
datasets:
  ds1:
    description: Gateway test dataset one, for holders of a DAC grant for it
    read:
      visa:
        type: ControlledAccessGrants
        value: const:{DAC}ds1
        source: const:{DAC}
        by: dac
  ds2:
    description: Gateway test dataset two, for holders of a DAC grant for it
    read:
      visa:
        type: ControlledAccessGrants
        value: const:{DAC}ds2
        source: const:{DAC}
        by: dac
"""


@dataclass
class Parts:
    issuer: Signer  # a trusted visa issuer (another identity namespace than the broker's)
    broker: Signer  # a trusted broker: signs passports, and visas of its own
    verifier: Verifier
    policies: PolicyStore
    server: ServerThread
    audit: list

    def passport(self, *grants: str, sub: str = "alice", **claims: object) -> str:
        """A passport whose grant visas the broker issued to the same identity."""
        visas = [
            self.broker.visa(sub, visa_object(value=f"{DAC}{g}", source=DAC), jti=f"visa-{g}-{sub}") for g in grants
        ]
        return self.broker.passport(visas, sub=sub, **claims)  # type: ignore[arg-type]

    def get(self, path: str, token: str | None, **headers: str) -> requests.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.get(self.server.url + path, headers=headers, timeout=10)


@pytest.fixture
def parts(stack: Stack, tmp_path: Path) -> Iterator[Parts]:
    issuer = Signer("https://visas.example/", TestKey.generate(), jku="https://visas.example/jwks.json")
    broker = Signer("https://broker.example/", TestKey.generate(), jku="https://broker.example/jwks.json")
    verifier = make_verifier(trust_config([issuer, broker], [broker]))
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "datasets.yaml").write_text(POLICY)
    policies = PolicyStore.open(tmp_path / "policies")
    authorizer = PassportAuthorizer(verifier, policies, own_issuer=issuer.iss, clock=lambda: NOW)
    audit: list = []
    app = build_app(stack.settings, authorizer, tmp_path / "gw", audit=audit.append)
    app.extensions["gateway"].clock = lambda: NOW  # the forged tokens live around NOW
    with ServerThread(app) as server:
        yield Parts(issuer, broker, verifier, policies, server, audit)


def test_a_passport_with_a_grant_downloads(parts: Parts, stack: Stack) -> None:
    r = parts.get("/data/ds1/small.bin", parts.passport("ds1"), Range="bytes=0-99")
    assert r.status_code == 206 and r.content == stack.files.small[:100]
    decision = next(e for e in parts.audit if e.kind == "decision")
    assert decision.outcome == "allow" and decision.subject == "alice"
    assert decision.visas_used == ("visa-ds1-alice",)
    assert decision.basis["basis"][0]["jti"] == "visa-ds1-alice"


def test_a_passport_without_the_grant_is_403_with_the_required_visas(parts: Parts, stack: Stack) -> None:
    r = parts.get("/data/ds2/secret.bin", parts.passport("ds1"))
    assert r.status_code == 403
    body = r.json()
    assert body["error"] in ("no_matching_visa", "missing_visa")
    assert body["required"]["dataset"] == "ds2"
    assert stack.files.secret[:16] not in r.content


def test_a_dataset_the_policy_does_not_know_is_refused(parts: Parts) -> None:
    r = parts.get("/data/off1/small.bin", parts.passport("ds1"))
    assert r.status_code == 403 and r.json()["error"] == "unknown_dataset" and "required" not in r.json()


@pytest.mark.parametrize("spoil", ["tamper", "expired", "untrusted", "visa_as_bearer", "garbage", "id_token_typ"])
def test_bad_credentials_are_401_invalid_token(parts: Parts, spoil: str) -> None:
    good = parts.passport("ds1")
    token = {
        "tamper": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "expired": parts.passport("ds1", exp=NOW - 120, iat=NOW - 600),
        "untrusted": Signer(parts.broker.iss, TestKey.generate()).passport(
            [parts.broker.visa("alice", visa_object(value=f"{DAC}ds1", source=DAC))]
        ),
        "visa_as_bearer": parts.broker.visa("alice", visa_object(value=f"{DAC}ds1", source=DAC)),
        "garbage": "not.a.jwt",
        "id_token_typ": parts.broker.passport([], header={"alg": "ES256", "kid": parts.broker.key.kid, "typ": "JWT"}),
    }[spoil]
    r = parts.get("/data/ds1/small.bin", token)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="ga4gh-broker", error="invalid_token"'


def test_a_visa_for_someone_else_does_not_count(parts: Parts) -> None:
    foreign = parts.broker.visa("mallory", visa_object(value=f"{DAC}ds1", source=DAC))
    token = parts.broker.passport([foreign], sub="alice")
    assert parts.get("/data/ds1/small.bin", token).status_code == 403


def test_a_visa_of_another_issuer_counts_only_when_linked(parts: Parts, stack: Stack) -> None:
    """Passport 1.2 / SPEC-DIGEST C19: identities are combined only through LinkedIdentities."""
    from broker.core.linked_identities import format_linked_identities

    grant = parts.issuer.visa("alice@visas", visa_object(value=f"{DAC}ds1", source=DAC), jti="remote-grant")
    unlinked = parts.broker.passport([grant], sub="alice")
    r = parts.get("/data/ds1/small.bin", unlinked)
    assert r.status_code == 403 and r.json()["error"] == "not_linked"
    link = parts.broker.visa(
        "alice",
        visa_object(
            type="LinkedIdentities",
            value=format_linked_identities([(parts.issuer.iss, "alice@visas")]),
            source=parts.broker.iss,
            by="system",
        ),
        jti="link-1",
    )
    r = parts.get("/data/ds1/small.bin", parts.broker.passport([grant, link], sub="alice"))
    assert r.status_code == 200 and r.content == stack.files.small
    decision = [e for e in parts.audit if e.kind == "decision"][-1]
    assert set(decision.visas_used) == {"remote-grant", "link-1"}


def test_drs_post_with_passports_in_the_body(parts: Parts) -> None:
    object_id = encode_object_id(ObjectRef("ds1", "dir/nested.bin"))
    url = parts.server.url + f"/ga4gh/drs/v1/objects/{object_id}/access/https"
    r = requests.post(url, json={"passports": [parts.passport("ds2"), parts.passport("ds1")]}, timeout=10)
    assert r.status_code == 200, r.text
    signed = r.json()["url"]
    assert requests.get(signed, timeout=10).status_code == 200
    r = requests.post(url, json={"passports": [parts.passport("ds2")]}, timeout=10)
    assert r.status_code == 403 and r.json()["status_code"] == 403


def test_signed_url_expiry_is_capped_by_the_passport(parts: Parts, stack: Stack) -> None:
    object_id = encode_object_id(ObjectRef("ds1", "small.bin"))
    token = parts.passport("ds1", exp=NOW + 30)
    r = requests.get(
        parts.server.url + f"/ga4gh/drs/v1/objects/{object_id}/access/https",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert f"expires={NOW + 30}&" in r.json()["url"]


def test_decision_endpoint_with_a_passport(parts: Parts) -> None:
    r = requests.get(
        parts.server.url + "/gateway/decision",
        timeout=10,
        headers={"Authorization": f"Bearer {parts.passport('ds1')}", "X-Original-URI": "/files/ds1/small.bin"},
    )
    assert r.status_code == 200 and r.headers["X-Auth-Subject"] == "alice"
    r = requests.get(
        parts.server.url + "/gateway/decision",
        timeout=10,
        headers={"Authorization": f"Bearer {parts.passport('ds1')}", "X-Original-URI": "/files/ds2/secret.bin"},
    )
    assert r.status_code == 403 and r.headers["X-Auth-Reason"] in ("no_matching_visa", "missing_visa")


def test_a_policy_edit_takes_effect_on_the_next_request(parts: Parts, tmp_path: Path) -> None:
    token = parts.passport("ds1")
    assert parts.get("/data/ds1/small.bin", token).status_code == 200
    (tmp_path / "policies" / "datasets.yaml").write_text(POLICY.replace(f"const:{DAC}ds1", f"const:{DAC}ds1-v2"))
    assert parts.policies.reload().ok
    assert parts.get("/data/ds1/small.bin", token).status_code == 403


# ------------------------------------------------------------------ our own access tokens


OidcParts = tuple[ServerThread, Any, Any, Settings]


@pytest.fixture
def oidc(parts: Parts, stack: Stack, tmp_path: Path) -> Iterator[OidcParts]:
    from broker.oidc.tokens import verify_access_token
    from tests.support.legacy_store import open_store

    settings = Settings(issuer=parts.issuer.iss, data_dir=str(tmp_path / "broker"))
    store = open_store(settings)
    ring = open_ring(settings, store, auto_maintain_seconds=None)
    ring.maintain()

    def visas_for(token: object) -> list[str]:
        sub = token.sub  # type: ignore[attr-defined]
        return [parts.issuer.visa(sub, visa_object(value=f"{DAC}ds1", source=DAC), jti=f"visa-at-{sub}")]

    authorizer = PassportAuthorizer(
        parts.verifier,
        parts.policies,
        own_issuer=parts.issuer.iss,
        check_access_token=functools.partial(verify_access_token, ring, settings, store),
        visas_for=visas_for,
        clock=lambda: NOW,
    )
    app = build_app(replace(stack.settings), authorizer, tmp_path / "gw2")
    with ServerThread(app) as server:
        yield server, ring, store, settings
    store.close()


def mint(
    ring: object,
    settings: Settings,
    scope: tuple[str, ...] = ("openid", "ga4gh_passport_v1"),
    sub: str = "researcher-1",
) -> tuple[str, object]:
    from broker.oidc.tokens import mint_access_token

    return mint_access_token(
        ring, settings, sub=sub, client_id="client-a", scope=scope, grant="grant-1", now=int(time.time())
    )  # the key ring's clock is the real one


def test_our_access_token_with_the_passport_scope_downloads(oidc: OidcParts, stack: Stack) -> None:
    server, ring, _store, settings = oidc
    token, _ = mint(ring, settings)
    r = requests.get(server.url + "/data/ds1/small.bin", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200 and r.content == stack.files.small
    r = requests.get(server.url + "/data/ds2/secret.bin", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 403


def test_access_token_without_the_scope_is_403(oidc: OidcParts) -> None:
    server, ring, _store, settings = oidc
    token, _ = mint(ring, settings, scope=("openid",))
    r = requests.get(server.url + "/data/ds1/small.bin", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"


def test_a_revoked_access_token_is_refused_at_the_next_request(oidc: OidcParts) -> None:
    server, ring, store, settings = oidc
    token, claims = mint(ring, settings)
    headers = {"Authorization": f"Bearer {token}", "Range": "bytes=0-9"}
    assert requests.get(server.url + "/data/ds1/small.bin", headers=headers, timeout=10).status_code == 206
    store.revoke_token_id(claims.jti, claims.exp)  # type: ignore[attr-defined]
    r = requests.get(server.url + "/data/ds1/small.bin", headers=headers, timeout=10)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]


# ------------------------------------------------------------------ the decision cache (issue 12)


class CountingVerifier:
    """The real verifier, counting the passports it is asked to verify."""

    def __init__(self, inner: Verifier) -> None:
        self.inner = inner
        self.passports = 0

    def verify_passport(self, *args: Any, **kwargs: Any) -> Any:
        self.passports += 1
        return self.inner.verify_passport(*args, **kwargs)

    def verify_visas(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.verify_visas(*args, **kwargs)


def cached_authorizer(parts: Parts, clock: list[float]) -> tuple[PassportAuthorizer, CountingVerifier, DecisionCache]:
    counting = CountingVerifier(parts.verifier)
    cache = DecisionCache(100, 30, clock=lambda: clock[0])
    authorizer = PassportAuthorizer(
        counting,  # type: ignore[arg-type]
        parts.policies,
        own_issuer=parts.issuer.iss,
        clock=lambda: clock[0],
        decisions=cache,
    )
    return authorizer, counting, cache


def test_a_cached_allow_is_reused_for_the_same_credential_and_object_without_verifying_again(parts: Parts) -> None:
    clock = [float(NOW)]
    authorizer, counting, _ = cached_authorizer(parts, clock)
    token = parts.passport("ds1")
    first = authorizer.authorize(token, "ds1", "small.bin")
    again = authorizer.authorize(token, "ds1", "small.bin")
    assert first.allow and again == first
    assert counting.passports == 1
    # Another object, dataset or purpose is decided afresh.
    assert authorizer.authorize(token, "ds1", "big.bin").allow
    assert not authorizer.authorize(token, "ds2", "small.bin").allow
    assert counting.passports == 3


def test_refusals_are_never_cached(parts: Parts) -> None:
    clock = [float(NOW)]
    authorizer, counting, cache = cached_authorizer(parts, clock)
    token = parts.passport("ds2")
    assert not authorizer.authorize(token, "ds1", "small.bin").allow
    assert not authorizer.authorize(token, "ds1", "small.bin").allow
    assert counting.passports == 2 and len(cache) == 0


def test_ga14_a_revocation_heard_by_the_process_empties_the_decision_cache_at_once(parts: Parts) -> None:
    clock = [float(NOW)]
    authorizer, counting, cache = cached_authorizer(parts, clock)
    token = parts.passport("ds1")
    assert authorizer.authorize(token, "ds1", "small.bin").allow
    cache.revoked("some-grant-id")  # what the revocation watcher calls, in every process
    assert len(cache) == 0
    assert authorizer.authorize(token, "ds1", "small.bin").allow
    assert counting.passports == 2


def test_an_allow_decided_while_a_revocation_arrived_is_not_stored(parts: Parts) -> None:
    clock = [float(NOW)]
    authorizer, _, cache = cached_authorizer(parts, clock)
    decision = authorizer.authorize(parts.passport("ds1"), "ds1", "small.bin")
    epoch = cache.epoch
    cache.revoked("grant-1")
    cache.put(("digest", "ds1", "small.bin", "read", None), parts.policies.current, decision, epoch)
    assert len(cache) == 0


def test_a_policy_reload_is_never_answered_from_the_cache(parts: Parts, tmp_path: Path) -> None:
    clock = [float(NOW)]
    authorizer, _, _ = cached_authorizer(parts, clock)
    token = parts.passport("ds1")
    assert authorizer.authorize(token, "ds1", "small.bin").allow
    (tmp_path / "policies" / "datasets.yaml").write_text(POLICY.replace(f"const:{DAC}ds1", f"const:{DAC}ds1-v2"))
    assert parts.policies.reload().ok
    assert not authorizer.authorize(token, "ds1", "small.bin").allow


def test_a_cached_allow_ends_at_its_time_limit_and_never_outlives_the_passport(parts: Parts) -> None:
    clock = [float(NOW)]
    authorizer, counting, _ = cached_authorizer(parts, clock)
    token = parts.passport("ds1", exp=NOW + 10)
    assert authorizer.authorize(token, "ds1", "small.bin").allow
    clock[0] = NOW + 5
    assert authorizer.authorize(token, "ds1", "small.bin").allow
    assert counting.passports == 1
    clock[0] = NOW + 11  # past the passport's exp: not answered from the cache, verified afresh
    authorizer.authorize(token, "ds1", "small.bin")
    assert counting.passports == 2


def test_a_revoked_access_token_is_refused_at_the_next_request_even_with_a_cached_allow(
    oidc: OidcParts, parts: Parts
) -> None:
    from broker.oidc.tokens import verify_access_token

    _server, ring, store, settings = oidc
    cache = DecisionCache(100, 30, clock=lambda: NOW)  # the forged visas live around NOW
    authorizer = PassportAuthorizer(
        parts.verifier,
        parts.policies,
        own_issuer=parts.issuer.iss,
        check_access_token=functools.partial(verify_access_token, ring, settings, store),
        visas_for=lambda token: [
            parts.issuer.visa(token.sub, visa_object(value=f"{DAC}ds1", source=DAC), jti=f"visa-at-{token.sub}")
        ],
        clock=lambda: NOW,
        decisions=cache,
    )
    token, claims = mint(ring, settings)
    assert authorizer.authorize(token, "ds1", "small.bin").allow
    assert len(cache) == 1
    store.revoke_token_id(claims.jti, claims.exp)  # type: ignore[attr-defined]
    refused = authorizer.authorize(token, "ds1", "small.bin")
    assert (refused.allow, refused.status) == (False, 401)
