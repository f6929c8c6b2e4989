"""The Store contract: every protocol method, the same expectations for every backend."""

from __future__ import annotations

import math
import time

import pytest

from broker.dac.records import Grant
from broker.identity.records import Identity, IdentityLink
from broker.keys.records import SIGNING_KEYS, KeyRecord
from broker.oidc.records import Client, Consent, RefreshToken
from broker.store.base import Conflict
from broker.store.records import Records
from tests.store.conftest import Backend
from tests.support.legacy_store import Store

FAR = 4_000_000_000  # an expiry far in the future (year 2096)


def grant(gid: str, identity: str = "id-1", dataset: str = "EGAD1", granted_at: int = 100) -> Grant:
    return Grant(
        id=gid,
        identity_id=identity,
        dataset=dataset,
        dac="dac-a",
        granted_by="alice",
        granted_at=granted_at,
        start=granted_at,
        end=granted_at + 1000,
        reason="approved",
    )


def refresh(token_hash: str, family: str = "fam-1", expires_at: int = FAR, used: bool = False) -> RefreshToken:
    return RefreshToken(
        token_hash=token_hash,
        family_id=family,
        identity_id="id-1",
        client_id="cli-1",
        scope="openid ga4gh_passport_v1",
        issued_at=100,
        expires_at=expires_at,
        used=used,
    )


# ---------------------------------------------------------------------------- lifecycle


def test_health_of_a_well_configured_backend_is_ok_without_warnings(backend: Backend) -> None:
    health = backend.store.health()
    assert health.ok is True
    assert health.backend == backend.kind == backend.store.backend
    assert health.warnings == []


def test_store_satisfies_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)


# ---------------------------------------------------------------------------- identities


def test_identity_round_trips_and_is_replaced_by_id(store: Store) -> None:
    assert store.get_identity("id-1") is None
    ident = Identity(id="id-1", created_at=100, display_name="Ann Researcher", email="ann@example.org")
    store.put_identity(ident)
    assert store.get_identity("id-1") == ident
    renamed = Identity(id="id-1", created_at=100, display_name="Ann R.")
    store.put_identity(renamed)
    assert store.get_identity("id-1") == renamed


def test_links_are_found_by_iss_and_sub_and_listed_per_identity(store: Store) -> None:
    a = IdentityLink(identity_id="id-1", iss="https://idp.example/", sub="u1", linked_at=200, connector="oidc")
    b = IdentityLink(identity_id="id-1", iss="https://other.example/", sub="u1", linked_at=100)
    store.link_identity(a)
    store.link_identity(b)
    assert store.find_link("https://idp.example/", "u1") == a
    assert store.find_link("https://idp.example", "u1") is None  # exact strings only
    assert store.find_link("https://idp.example/", "U1") is None
    assert store.links_of("id-1") == [b, a]  # by linked_at
    assert store.links_of("id-2") == []


def test_linking_an_upstream_identity_to_a_second_account_is_a_conflict(store: Store) -> None:
    first = IdentityLink(identity_id="id-1", iss="https://idp.example/", sub="u1", linked_at=1)
    store.link_identity(first)
    with pytest.raises(Conflict):
        store.link_identity(IdentityLink(identity_id="id-2", iss="https://idp.example/", sub="u1", linked_at=2))
    assert store.find_link("https://idp.example/", "u1") == first
    assert store.links_of("id-2") == []
    relinked = IdentityLink(identity_id="id-1", iss="https://idp.example/", sub="u1", linked_at=3)
    store.link_identity(relinked)  # the same account again is fine
    assert store.links_of("id-1") == [relinked]


# ---------------------------------------------------------------------------- grants


def test_grants_round_trip_and_are_indexed_by_identity_and_dataset(store: Store) -> None:
    g1, g2, g3 = grant("g1", granted_at=300), grant("g2", granted_at=100), grant("g3", identity="id-2", dataset="EGAD2")
    for g in (g1, g2, g3):
        store.put_grant(g)
    assert store.get_grant("g1") == g1
    assert store.get_grant("nope") is None
    assert store.grants_of("id-1") == [g2, g1]
    assert store.grants_for_dataset("EGAD1") == [g2, g1]
    assert store.grants_for_dataset("EGAD2") == [g3]


def test_replacing_a_grant_moves_it_between_indexes_and_keeps_revocation(store: Store) -> None:
    store.put_grant(grant("g1"))
    moved = Grant(
        id="g1",
        identity_id="id-9",
        dataset="EGAD9",
        dac="dac-b",
        granted_by="bob",
        granted_at=5,
        start=5,
        end=50,
        revoked_at=7,
        revoked_by="carol",
        revoke_reason="withdrawn",
    )
    store.put_grant(moved)
    assert store.get_grant("g1") == moved
    assert store.grants_of("id-1") == []
    assert store.grants_for_dataset("EGAD1") == []
    assert store.grants_of("id-9") == [moved]
    assert store.grants_for_dataset("EGAD9") == [moved]
    assert not moved.live(6)


# ---------------------------------------------------------------------------- clients


def test_clients_round_trip_with_every_field(store: Store) -> None:
    c = Client(
        client_id="cli-1",
        name="Portal",
        redirect_uris=("https://portal.example/cb",),
        grant_types=("authorization_code",),
        scopes=("openid", "ga4gh_passport_v1"),
        auth_method="private_key_jwt",
        secret_hash=None,
        jwks={"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "BB"}]},
        post_logout_redirect_uris=("https://portal.example/bye",),
        created_at=42,
    )
    public = Client(client_id="cli-0", name="CLI", auth_method="none")
    store.put_client(c)
    store.put_client(public)
    assert store.get_client("cli-1") == c
    assert isinstance(store.get_client("cli-1").redirect_uris, tuple)  # type: ignore[union-attr]
    assert store.list_clients() == [public, c]
    assert store.get_client("cli-0").public  # type: ignore[union-attr]


def test_deleting_a_client_reports_whether_it_existed(store: Store) -> None:
    store.put_client(Client(client_id="cli-1", name="x", secret_hash="$argon2id$v=19$..."))
    assert store.delete_client("cli-1") is True
    assert store.delete_client("cli-1") is False
    assert store.get_client("cli-1") is None
    assert store.list_clients() == []


# ---------------------------------------------------------------------------- tickets


def test_ticket_is_consumed_exactly_once(store: Store) -> None:
    store.put_ticket("code", "abc", {"client_id": "cli-1", "nonce": "n"}, ttl=60)
    assert store.peek_ticket("code", "abc") == {"client_id": "cli-1", "nonce": "n"}
    assert store.consume_ticket("code", "abc") == {"client_id": "cli-1", "nonce": "n"}
    assert store.consume_ticket("code", "abc") is None
    assert store.peek_ticket("code", "abc") is None


def test_add_ticket_refuses_an_existing_key_and_put_replaces_it(store: Store) -> None:
    assert store.add_ticket("jti", "j1", {"n": 1}, ttl=60) is True
    assert store.add_ticket("jti", "j1", {"n": 2}, ttl=60) is False
    assert store.peek_ticket("jti", "j1") == {"n": 1}
    store.put_ticket("jti", "j1", {"n": 3}, ttl=60)
    assert store.peek_ticket("jti", "j1") == {"n": 3}


def test_ticket_kinds_and_keys_never_collide(store: Store) -> None:
    store.put_ticket("a:b", "c", {"v": 1}, ttl=60)
    store.put_ticket("a", "b:c", {"v": 2}, ttl=60)
    store.put_ticket("a", "b%3Ac", {"v": 3}, ttl=60)
    assert store.consume_ticket("a:b", "c") == {"v": 1}
    assert store.consume_ticket("a", "b:c") == {"v": 2}
    assert store.consume_ticket("a", "b%3Ac") == {"v": 3}
    assert store.consume_ticket("code", "b:c") is None


@pytest.mark.parametrize("ttl", [0, -1, 1.5, True, "60", None])
def test_a_ticket_without_a_positive_whole_ttl_is_refused(store: Store, ttl: object) -> None:
    with pytest.raises(ValueError, match="ttl"):
        store.put_ticket("code", "k", {}, ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        store.add_ticket("code", "k", {}, ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        store.put_session("s", {}, ttl=ttl)  # type: ignore[arg-type]
    assert store.peek_ticket("code", "k") is None


@pytest.mark.parametrize("key", ["", 42, None, {"a": 1}, "x" * 5000])
def test_a_ticket_key_that_is_not_a_bounded_string_is_refused(store: Store, key: object) -> None:
    with pytest.raises(ValueError, match="ticket key"):
        store.add_ticket("jti", key, {}, ttl=60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token id"):
        store.revoke_token_id(key, FAR)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- refresh tokens


def test_refresh_token_use_returns_the_state_before_and_marks_it_used(store: Store) -> None:
    assert store.use_refresh_token("missing") is None
    rt = refresh("h1")
    store.put_refresh_token(rt)
    assert store.use_refresh_token("h1") == rt  # used=False before this call
    again = store.use_refresh_token("h1")
    assert again is not None and again.used is True  # reuse is visible to the caller
    assert again == refresh("h1", used=True)


def test_revoking_a_family_removes_its_tokens_and_is_remembered(store: Store) -> None:
    store.put_refresh_token(refresh("h1"))
    store.put_refresh_token(refresh("h2"))
    store.put_refresh_token(refresh("other", family="fam-2"))
    assert store.family_revoked("fam-1") is False
    assert store.revoke_family("fam-1") == 2
    assert store.family_revoked("fam-1") is True
    assert store.use_refresh_token("h1") is None
    assert store.use_refresh_token("h2") is None
    assert store.family_revoked("fam-2") is False
    assert store.use_refresh_token("other") is not None
    assert store.revoke_family("fam-1") == 0


def test_a_token_put_into_a_revoked_family_is_never_usable(store: Store) -> None:
    """A rotation in flight while the family is revoked must not leave a live token behind."""
    store.put_refresh_token(refresh("h1"))
    store.revoke_family("fam-1")
    store.put_refresh_token(refresh("h2"))
    assert store.use_refresh_token("h2") is None
    assert store.family_revoked("fam-1") is True


def test_revoking_an_unknown_family_marks_it(store: Store) -> None:
    assert store.revoke_family("never-seen") == 0
    assert store.family_revoked("never-seen") is True


def test_an_expired_refresh_token_is_never_returned(store: Store) -> None:
    store.put_refresh_token(refresh("old", expires_at=int(time.time()) - 1))
    assert store.use_refresh_token("old") is None


# ---------------------------------------------------------------------------- sessions


def test_sessions_round_trip_and_delete(store: Store) -> None:
    assert store.get_session("s1") is None
    store.put_session("s1", {"identity_id": "id-1", "amr": ["pwd"]}, ttl=60)
    assert store.get_session("s1") == {"identity_id": "id-1", "amr": ["pwd"]}
    store.put_session("s1", {"identity_id": "id-1", "step": 2}, ttl=60)
    assert store.get_session("s1") == {"identity_id": "id-1", "step": 2}
    store.delete_session("s1")
    assert store.get_session("s1") is None
    store.delete_session("s1")  # deleting twice is fine


# ---------------------------------------------------------------------------- consents


def test_consents_round_trip_list_and_withdraw(store: Store) -> None:
    a = Consent(identity_id="id-1", client_id="cli-b", scopes=("openid", "ga4gh_passport_v1"), granted_at=5)
    b = Consent(identity_id="id-1", client_id="cli-a", scopes=("openid",), granted_at=6)
    store.put_consent(a)
    store.put_consent(b)
    store.put_consent(Consent(identity_id="id-2", client_id="cli-a", scopes=(), granted_at=1))
    assert store.get_consent("id-1", "cli-b") == a
    assert store.consents_of("id-1") == [b, a]
    assert store.delete_consent("id-1", "cli-b") is True
    assert store.delete_consent("id-1", "cli-b") is False
    assert store.get_consent("id-1", "cli-b") is None
    assert store.consents_of("id-1") == [b]


# ---------------------------------------------------------------------------- revoked token ids


def test_revoked_token_ids_are_remembered_until_their_expiry(store: Store) -> None:
    assert store.is_token_revoked("jti-1") is False
    store.revoke_token_id("jti-1", FAR)
    assert store.is_token_revoked("jti-1") is True
    store.revoke_token_id("jti-1", int(time.time()) + 10)  # a shorter end never shortens it
    assert store.is_token_revoked("jti-1") is True
    store.revoke_token_id("jti-old", int(time.time()) - 5)  # already past its own end
    assert store.is_token_revoked("jti-old") is False
    assert store.is_token_revoked("jti-2") is False


# ---------------------------------------------------------------------------- keys


def test_key_records_round_trip_with_private_bytes_and_delete(store: Store) -> None:
    keys = Records(store.kernel, SIGNING_KEYS)  # type: ignore[attr-defined]
    k1 = KeyRecord(
        kid="k1",
        alg="ES256",
        public_jwk={"kty": "EC", "crv": "P-256", "x": "a", "y": "b"},
        private=bytes(range(256)),
        created_at=200,
        not_before=300,
    )
    k0 = KeyRecord(
        kid="k0",
        alg="RS256",
        public_jwk={"kty": "RSA", "n": "n", "e": "AQAB"},
        private=b"\x00cipher",
        created_at=100,
        not_before=100,
        retired_at=300,
        remove_after=90000,
    )
    keys.put(k1)
    keys.put(k0)
    assert sorted(keys.scan(), key=lambda k: (k.created_at, k.kid)) == [k0, k1]
    keys.put(
        KeyRecord(
            kid="k0",
            alg="RS256",
            public_jwk=k0.public_jwk,
            private=k0.private,
            created_at=100,
            not_before=100,
            retired_at=400,
            remove_after=90000,
        )
    )
    assert sorted(keys.scan(), key=lambda k: (k.created_at, k.kid))[0].retired_at == 400
    keys.delete("k0")
    keys.delete("k0")
    assert sorted(keys.scan(), key=lambda k: (k.created_at, k.kid)) == [k1]


# ---------------------------------------------------------------------------- audit


def test_audit_records_are_chained_from_genesis_and_read_in_order(store: Store) -> None:
    from broker.store.audit import GENESIS_HASH, chain_hash

    records = [store.audit_append({"action": "grant", "n": i, "tags": ("a", "b")}, at=1000 + i) for i in range(3)]
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[0].prev_hash == GENESIS_HASH
    assert records[1].prev_hash == records[0].hash
    assert records[2].hash == chain_hash(3, 1002, {"action": "grant", "n": 2, "tags": ["a", "b"]}, records[1].hash)
    assert list(store.audit_records()) == records
    assert list(store.audit_records(after_seq=2)) == records[2:]
    assert list(store.audit_records(after_seq=3)) == []


def test_audit_last_seq_follows_appends_without_reading_the_log(store: Store) -> None:
    assert store.audit_last_seq() == 0
    for n in range(1, 4):
        assert store.audit_append({"event": "x", "n": n}, 1_700_000_000).seq == n
        assert store.audit_last_seq() == n


def test_audit_reads_long_logs_in_pages(store: Store) -> None:
    for i in range(1203):
        store.audit_append({"n": i}, at=i)
    seqs = [r.seq for r in store.audit_records()]
    assert seqs == list(range(1, 1204))
    assert [r.seq for r in store.audit_records(after_seq=1000)] == list(range(1001, 1204))


@pytest.mark.parametrize(
    "event",
    [
        ["not", "an", "object"],
        {"n": math.nan},
        {"n": math.inf},
        {1: "int key"},
        {"o": object()},
        {"big": "x" * 70_000},
        {"__malformed__": "reserved"},
    ],
)
def test_an_audit_event_that_is_not_plain_bounded_json_is_refused(store: Store, event: object) -> None:
    with pytest.raises(ValueError, match="audit event"):
        store.audit_append(event, at=1)  # type: ignore[arg-type]
    assert list(store.audit_records()) == []


def test_audit_time_must_be_whole_seconds(store: Store) -> None:
    with pytest.raises(ValueError, match="integer seconds"):
        store.audit_append({"a": 1}, at=1.5)  # type: ignore[arg-type]
    assert list(store.audit_records()) == []
