"""The identity area on real stores (SQLite and Redis): accounts by (iss, sub), links, the conflict rule, search.

Records are read and written with the first release's kinds, keys and layout, so accounts made
before the move read back (and the other way round, while other areas still use the old store).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.identity.records import Identity, IdentityLink
from broker.identity.service import MAX_SEARCH_RESULTS, IdentityService, LinkRefused, Profile
from broker.settings import Settings
from broker.store.settings import StoreSettings
from tests.support import legacy_store as legacy_base
from tests.support.legacy_store import open_store

A, B = "https://idp-a.example/", "https://idp-b.example/"
NOW = 1_700_000_000


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    store_settings = StoreSettings(backend="sqlite")
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        store_settings = StoreSettings(backend="redis", url=server.url, namespace=f"t-{uuid.uuid4().hex}")
    opened = open_store(Settings(data_dir=str(tmp_path / "var"), store=store_settings))
    yield opened
    opened.close()


def _people(store: Any) -> IdentityService:
    return IdentityService(store.kernel)


def test_first_login_creates_one_account_and_the_next_finds_it(store: Any) -> None:
    people = _people(store)
    first = people.find_or_create(A, "alice", "idp-a", Profile("Alice", "alice@uni.example"), NOW)
    again = people.find_or_create(A, "alice", "idp-a", Profile("Someone Else", "x@y.example"), NOW + 5)
    assert again.id == first.id and again.display_name == "Alice"
    assert [(link.iss, link.sub) for link in people.links_of(first.id)] == [(A, "alice")]


def test_rp08_same_sub_or_same_email_at_another_issuer_is_another_account(store: Any) -> None:
    people = _people(store)
    at_a = people.find_or_create(A, "carol", "idp-a", Profile("Carol", "carol@shared.example"), NOW)
    at_b = people.find_or_create(B, "carol", "idp-b", Profile("Carol", "carol@shared.example"), NOW)
    assert at_a.id != at_b.id


def test_concurrent_first_logins_of_one_identity_make_one_account(store: Any) -> None:
    people = _people(store)
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def login() -> None:
        barrier.wait()
        ids.append(people.find_or_create(A, "racer", "idp-a", Profile("R", ""), NOW).id)

    threads = [threading.Thread(target=login) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(people.links_of(ids[0])) == 1


def test_link_adds_an_identity_and_refuses_one_of_another_account(store: Any) -> None:
    people = _people(store)
    alice = people.find_or_create(A, "alice", "idp-a", Profile("Alice", ""), NOW)
    bob = people.find_or_create(B, "bob", "idp-b", Profile("Bob", ""), NOW)
    assert people.link(alice.id, B, "alice-at-b", "idp-b", NOW + 1) is True
    assert people.link(alice.id, B, "alice-at-b", "idp-b", NOW + 2) is False  # already hers: nothing to do
    with pytest.raises(LinkRefused):
        people.link(alice.id, B, "bob", "idp-b", NOW + 3)
    assert [link.sub for link in people.links_of(bob.id)] == ["bob"]  # nothing changed for Bob
    assert [link.sub for link in people.links_of(alice.id)] == ["alice", "alice-at-b"]  # oldest first


def test_concurrent_links_of_one_identity_to_two_accounts_give_it_to_one(store: Any) -> None:
    people = _people(store)
    accounts = [people.find_or_create(A, f"p{i}", "idp-a", Profile(f"P{i}", ""), NOW).id for i in range(6)]
    barrier = threading.Barrier(len(accounts))
    outcomes: list[str] = []

    def link(account: str) -> None:
        barrier.wait()
        try:
            people.link(account, B, "contested", "idp-b", NOW)
            outcomes.append(account)
        except LinkRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=link, args=(a,)) for a in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1
    found = people.find_link(B, "contested")
    assert found is not None and found.identity_id == winners[0]


def test_register_writes_everything_or_nothing(store: Any) -> None:
    people = _people(store)

    def fails(tx: Any, identity: Identity) -> None:
        raise RuntimeError("the caller's own write failed")

    with pytest.raises(RuntimeError):
        people.register(A, "half", "local", Profile("Half", ""), NOW, also=fails)
    assert people.find_link(A, "half") is None
    made = people.register(A, "whole", "local", Profile("Whole", ""), NOW)
    assert people.get(made.id) == made
    with pytest.raises(LinkRefused):
        people.register(A, "whole", "local", Profile("Again", ""), NOW)


def test_records_keep_the_first_release_layout(store: Any) -> None:
    """Written through the first release's typed-store facade, read by the identity service, and back."""
    store.put_identity(legacy_base.Identity(id="old-1", created_at=NOW, display_name="Old", email="o@x.example"))
    store.link_identity(legacy_base.IdentityLink(identity_id="old-1", iss=A, sub="old", linked_at=NOW, connector="c"))
    people = _people(store)
    assert people.get("old-1") == Identity(id="old-1", created_at=NOW, display_name="Old", email="o@x.example")
    assert people.links_of("old-1") == [IdentityLink("old-1", A, "old", NOW, "c")]
    assert people.find_or_create(A, "old", "c", Profile("New", ""), NOW).id == "old-1"
    new = people.find_or_create(B, "new", "c", Profile("New", "n@x.example"), NOW)
    assert store.get_identity(new.id).email == "n@x.example"
    assert [(link.iss, link.sub) for link in store.links_of(new.id)] == [(B, "new")]
    with pytest.raises(legacy_base.Conflict):  # the old store sees the same conflict rule
        store.link_identity(legacy_base.IdentityLink(identity_id="someone", iss=B, sub="new", linked_at=NOW))


@pytest.mark.parametrize("bad", ["", "x" * 5000, None, 5])
def test_ids_no_account_could_have_find_nothing(store: Any, bad: Any) -> None:
    people = _people(store)
    assert people.get(bad) is None and people.links_of(bad) == [] and people.find_link(A, bad) is None


def test_search_by_name_email_id_or_linked_identity_is_bounded(store: Any) -> None:
    people = _people(store)
    ada = people.find_or_create(A, "ada-sub", "idp-a", Profile("Ada Lovelace", "ada@analytical.example"), NOW)
    people.find_or_create(A, "bob-sub", "idp-a", Profile("Bob", "bob@uni.example"), NOW)
    assert [p.id for p in people.search("lovelace")] == [ada.id]
    assert [p.id for p in people.search("ANALYTICAL")] == [ada.id]
    assert [p.id for p in people.search("ada-sub")] == [ada.id]  # a linked upstream sub, exactly
    assert [p.id for p in people.search(ada.id)] == [ada.id]
    assert people.search("a") == [] and people.search("x" * 201) == []
    for i in range(MAX_SEARCH_RESULTS + 10):
        people.find_or_create(A, f"many-{i}", "idp-a", Profile(f"Many {i:03}", ""), NOW)
    found = people.search("many")
    assert len(found) == MAX_SEARCH_RESULTS
    assert len(people.search("many", limit=5)) == 5
