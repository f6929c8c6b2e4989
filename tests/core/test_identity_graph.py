"""The identity graph built from LinkedIdentities visas (broker.core.identity_graph)."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.identity_graph import IdentityGraph, NotLinkedError
from broker.core.linked_identities import format_linked_identities
from broker.core.models import LINKED_IDENTITIES, Visa, VisaObject
from tests.core import vectors

EXAMPLE1 = ("https://example1.org/oidc", "1234")
EXAMPLE2 = ("https://example2.org/oidc", "567")
EXAMPLE3 = ("https://example3.org/oidc", "890123")


def visa_from_payload(payload: dict[str, Any], *, exp: int = 2_000_000_000) -> Visa:
    obj = payload["ga4gh_visa_v1"]
    return Visa(
        iss=payload["iss"],
        sub=payload["sub"],
        iat=payload.get("iat", 1),
        exp=payload.get("exp", exp),
        visa=VisaObject(
            type=obj["type"],
            asserted=obj.get("asserted", 1),
            value=obj["value"],
            source=obj["source"],
            by=obj.get("by"),
        ),
    )


def link(own: tuple[str, str], *others: tuple[str, str], exp: int = 2_000_000_000, value: str | None = None) -> Visa:
    return Visa(
        iss=own[0],
        sub=own[1],
        iat=1,
        exp=exp,
        visa=VisaObject(
            type=LINKED_IDENTITIES,
            asserted=1,
            value=format_linked_identities(others) if value is None else value,
            source=own[0],
            by="system",
        ),
    )


def test_linkedidentities_scenario_1_single_visa() -> None:
    graph = IdentityGraph.from_visas([visa_from_payload(vectors.data("linkedidentities-scenario-1-single-visa"))])
    for a, b in combinations([EXAMPLE1, EXAMPLE2, EXAMPLE3], 2):
        assert graph.linked(a, b) and graph.linked(b, a)
    assert graph.component(EXAMPLE2) == {EXAMPLE1, EXAMPLE2, EXAMPLE3}
    assert graph.ignored == ()


def test_linkedidentities_scenario_2_superset() -> None:
    visa = visa_from_payload(vectors.data("linkedidentities-scenario-2-superset"))
    graph = IdentityGraph.from_visas([visa])
    listed = [
        ("http://example1.org/oidc", "1234"),
        ("http://example2.org/oidc", "567"),
        ("http://example3.org/oidc", "890123"),
        ("http://example4.org/oidc", "sub4"),
    ]
    own = ("https://example0.org/oidc", "00001")
    assert graph.component(own) == {own, *listed}
    for a, b in combinations(listed, 2):
        assert graph.link_visas(a, b) == (visa,)
    # The example lists http:// issuers; the https:// identities of scenario 1 are other identities.
    assert not graph.linked(EXAMPLE1, listed[1])
    assert not graph.linked(EXAMPLE1, own)


def test_linkedidentities_scenario_3_chain() -> None:
    first, second = (visa_from_payload(payload) for payload in vectors.data("linkedidentities-scenario-3-chain"))
    graph = IdentityGraph.from_visas([first, second])
    assert graph.linked(EXAMPLE1, EXAMPLE3)
    assert graph.link_visas(EXAMPLE1, EXAMPLE3) == (first, second)
    assert graph.link_visas(EXAMPLE3, EXAMPLE1) == (second, first)
    assert graph.link_visas(EXAMPLE1, EXAMPLE2) == (first,)
    # Either half of the chain alone does not link the ends.
    assert not IdentityGraph.from_visas([first]).linked(EXAMPLE1, EXAMPLE3)
    assert not IdentityGraph.from_visas([second]).linked(EXAMPLE1, EXAMPLE3)


def test_example_passport_registered_access_pair_is_linked_by_visa6() -> None:
    example = vectors.vector("example-passport-claim-v1.2")
    payloads = example["data"]["ga4gh_passport_v1"]
    visa4, visa5, visa6 = (visa_from_payload(payload) for payload in payloads[3:6])
    expected = example["expected"]
    # Different identities: combining them needs a LinkedIdentities visa.
    assert visa4.identity != visa5.identity
    assert expected["registered_access_requires_linkedidentities"] is True
    assert not IdentityGraph.from_visas([]).linked(visa4.identity, visa5.identity)
    graph = IdentityGraph.from_visas([visa6])
    assert graph.linked(visa4.identity, visa5.identity)
    links = graph.link_visas(visa4.identity, visa5.identity)
    assert links == (visa6,)
    assert min(v.exp for v in (visa4, visa5, *links)) == expected["min_exp_if_visas_4_5_6_used"]


def test_jwt17_transplanted_visa_identity_is_linked_only_by_a_linkedidentities_visa() -> None:
    alice, bob = ("https://broker-a.example", "alice"), ("https://issuer-x.example", "bob")
    assert not IdentityGraph.from_visas([]).linked(alice, bob)
    unrelated = link(alice, ("https://issuer-x.example", "carol"))
    assert not IdentityGraph.from_visas([unrelated]).linked(alice, bob)
    assert IdentityGraph.from_visas([unrelated, link(alice, bob)]).linked(alice, bob)


@pytest.mark.parametrize(
    "near_miss",
    [
        pytest.param(("https://issuer-x.example/", "bob"), id="trailing-slash-iss"),
        pytest.param(("https://ISSUER-X.example", "bob"), id="iss-case"),
        pytest.param(("https://issuer-x.example", "Bob"), id="sub-case"),
        pytest.param(("https://issuer-x.example", "bob "), id="sub-trailing-space"),
    ],
)
def test_ga02_identities_are_compared_exactly(near_miss: tuple[str, str]) -> None:
    alice, bob = ("https://broker-a.example", "alice"), ("https://issuer-x.example", "bob")
    graph = IdentityGraph.from_visas([link(alice, bob)])
    assert not graph.linked(alice, near_miss)


def test_malformed_visas_are_ignored_and_the_rest_still_link() -> None:
    a, b, c = ("i", "a"), ("i", "b"), ("i", "c")
    broken = link(a, value="b,i,extra")
    not_linked_type = Visa(
        iss="i", sub="a", iat=1, exp=2, visa=VisaObject(type="AffiliationAndRole", asserted=1, value="c,i", source="s")
    )
    good = link(b, c)
    graph = IdentityGraph.from_visas([broken, not_linked_type, good])
    assert [ignored.visa for ignored in graph.ignored] == [broken, not_linked_type]
    assert "malformed LinkedIdentities value" in graph.ignored[0].reason
    assert "2 commas" in graph.ignored[0].reason
    assert "not LinkedIdentities" in graph.ignored[1].reason
    assert graph.linked(b, c)
    assert not graph.linked(a, b)
    assert not graph.linked(a, c)


def test_a_lone_identity_is_its_own_component() -> None:
    graph = IdentityGraph.from_visas([link(("i", "a"), ("i", "b"))])
    stranger = ("j", "z")
    assert graph.component(stranger) == {stranger}
    assert graph.linked(stranger, stranger)
    assert graph.link_visas(stranger, stranger) == ()
    assert graph.identities == {("i", "a"), ("i", "b")}


def test_link_visas_refuses_unlinked_identities() -> None:
    graph = IdentityGraph.from_visas([link(("i", "a"), ("i", "b"))])
    with pytest.raises(NotLinkedError, match="not linked"):
        graph.link_visas(("i", "a"), ("j", "z"))


def test_self_listing_adds_no_edge() -> None:
    own = ("i", "a")
    graph = IdentityGraph.from_visas([link(own, own)])
    assert graph.component(own) == {own}


def test_link_visas_prefers_the_path_that_expires_last() -> None:
    a, b, c, d = ("i", "a"), ("i", "b"), ("i", "c"), ("i", "d")
    short = link(a, d, exp=100)
    chain = [link(a, b, exp=900), link(b, c, exp=800), link(c, d, exp=700)]
    graph = IdentityGraph.from_visas([short, *chain])
    assert graph.link_visas(a, d) == tuple(chain)
    # With the short-cut living longest, the single hop wins.
    graph = IdentityGraph.from_visas([link(a, d, exp=1000), *chain])
    assert len(graph.link_visas(a, d)) == 1


def test_parallel_edges_keep_the_visa_that_expires_last() -> None:
    a, b = ("i", "a"), ("i", "b")
    early, late = link(a, b, exp=10), link(b, a, exp=20)
    assert IdentityGraph.from_visas([early, late]).link_visas(a, b) == (late,)
    assert IdentityGraph.from_visas([late, early]).link_visas(a, b) == (late,)


# --- property: components equal a reference closure; paths are real and as wide as possible ---

NODES = [("i", str(n)) for n in range(6)]
EDGES = st.lists(
    st.tuples(st.integers(0, 5), st.lists(st.integers(0, 5), min_size=1, max_size=3), st.integers(1, 9)), max_size=7
)


def reference_reachable(edges: list[tuple[int, list[int], int]], start: int, min_exp: int = 0) -> set[int]:
    seen, frontier = {start}, [start]
    while frontier:
        node = frontier.pop()
        for own, listed, exp in edges:
            if exp < min_exp:
                continue
            group = {own, *listed}
            if node in group:  # a visa links its own identity with each listed one, hence all of them
                for other in group - seen:
                    seen.add(other)
                    frontier.append(other)
    return seen


@settings(max_examples=200, deadline=None)
@given(edges=EDGES)
def test_graph_matches_reference_closure_and_widest_paths(edges: list[tuple[int, list[int], int]]) -> None:
    visas = [link(NODES[own], *(NODES[n] for n in listed), exp=exp) for own, listed, exp in edges]
    graph = IdentityGraph.from_visas(visas)
    for a, b in combinations(range(6), 2):
        expected = b in reference_reachable(edges, a)
        assert graph.linked(NODES[a], NODES[b]) is expected
        assert graph.linked(NODES[b], NODES[a]) is expected
        if not expected:
            continue
        path = graph.link_visas(NODES[a], NODES[b])
        used = [(edges[visas.index(v)][0], edges[visas.index(v)][1], v.exp) for v in path]
        assert b in reference_reachable(used, a), "the returned visas must themselves link a and b"
        widest = max(exp for _, _, exp in edges if b in reference_reachable(edges, a, min_exp=exp))
        assert min(v.exp for v in path) == widest
