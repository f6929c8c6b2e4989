"""LinkedIdentities values: strict parsing, canonical emitting (broker.core.linked_identities)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.linked_identities import MAX_LINKED_IDENTITIES, format_linked_identities, parse_linked_identities
from tests.core import vectors


@pytest.mark.parametrize("vector_id", ["linkedidentities-value-definition-example"])
def test_linkedidentities_value_definition_example(vector_id: str) -> None:
    case = vectors.data(vector_id)
    expected = tuple((pair["iss"], pair["sub"]) for pair in case["decoded"])
    assert parse_linked_identities(case["value"]) == expected
    # The definition example is already in our canonical encoding, so it re-emits byte for byte.
    assert format_linked_identities(expected) == case["value"]


def test_example_passport_linkedidentities_with_literal_colons() -> None:
    example = vectors.vector("example-passport-claim-v1.2")
    value = example["data"]["ga4gh_passport_v1"][5]["ga4gh_visa_v1"]["value"]
    expected = tuple((pair["iss"], pair["sub"]) for pair in example["expected"]["linkedidentities_decoded"])
    assert parse_linked_identities(value) == expected
    # We emit the canonical form (':' encoded too), which differs on the wire but decodes the same.
    canonical = format_linked_identities(expected)
    assert canonical == "10001,https%3A%2F%2Fissuer.example1.org%2Foidc;abcd,https%3A%2F%2Fother.example2.org%2Foidc"
    assert canonical != value
    assert parse_linked_identities(canonical) == expected


SCENARIO_CASES = [
    pytest.param(
        "linkedidentities-scenario-1-single-visa",
        (("https://example2.org/oidc", "567"), ("https://example3.org/oidc", "890123")),
        id="linkedidentities-scenario-1-single-visa",
    ),
    pytest.param(
        "linkedidentities-scenario-2-superset",
        (
            ("http://example1.org/oidc", "1234"),
            ("http://example2.org/oidc", "567"),
            ("http://example3.org/oidc", "890123"),
            ("http://example4.org/oidc", "sub4"),
        ),
        id="linkedidentities-scenario-2-superset",
    ),
]


@pytest.mark.parametrize(("vector_id", "expected"), SCENARIO_CASES)
def test_linkedidentities_scenario_values_parse(vector_id: str, expected: tuple[tuple[str, str], ...]) -> None:
    """The spec shows these unencoded; nothing in them needs encoding, so they parse as written."""
    assert parse_linked_identities(vectors.data(vector_id)["ga4gh_visa_v1"]["value"]) == expected


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, (("https://example2.org/oidc", "567"),)), (1, (("https://example3.org/oidc", "890123"),))],
    ids=["linkedidentities-scenario-3-chain-0", "linkedidentities-scenario-3-chain-1"],
)
def test_linkedidentities_scenario_3_chain_values_parse(index: int, expected: tuple[tuple[str, str], ...]) -> None:
    value = vectors.data("linkedidentities-scenario-3-chain")[index]["ga4gh_visa_v1"]["value"]
    assert parse_linked_identities(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("a,b c", "whitespace", id="space"),
        pytest.param("a,b\t", "whitespace", id="tab"),
        pytest.param("a,b\n", "whitespace", id="newline"),
        pytest.param("a,b;\u00a0c,d", "whitespace", id="no-break-space"),
        pytest.param("a", "0 commas", id="no-comma"),
        pytest.param("a,b,c", "2 commas", id="two-commas"),
        pytest.param("a,b;c,d,e", "entry 1 has 2 commas", id="two-commas-second-entry"),
        pytest.param(",b", "sub is empty", id="empty-sub"),
        pytest.param("a,", "iss is empty", id="empty-iss"),
        pytest.param("a,b;", "entry 1 is empty", id="trailing-semicolon"),
        pytest.param(";a,b", "entry 0 is empty", id="leading-semicolon"),
        pytest.param("a,b;;c,d", "entry 1 is empty", id="double-semicolon"),
        pytest.param("a%2,b", "bad percent-escape", id="short-escape"),
        pytest.param("a,b%", "bad percent-escape", id="bare-percent-at-end"),
        pytest.param("a%zz,b", "bad percent-escape", id="non-hex-escape"),
        pytest.param("a%+1,b", "bad percent-escape", id="sign-in-escape"),
        pytest.param("%FF,b", "UTF-8", id="invalid-utf8"),
        pytest.param("%C3,b", "UTF-8", id="truncated-utf8"),
        pytest.param("%ED%A0%80,b", "UTF-8", id="encoded-surrogate"),
    ],
)
def test_parse_refuses_malformed_values(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_linked_identities(value)


def test_parse_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_linked_identities(None)  # type: ignore[arg-type]


def test_parse_bounds_the_number_of_entries() -> None:
    value = ";".join(f"s{i},https%3A%2F%2Fi.example" for i in range(MAX_LINKED_IDENTITIES))
    assert len(parse_linked_identities(value)) == MAX_LINKED_IDENTITIES
    with pytest.raises(ValueError, match="limit"):
        parse_linked_identities(value + ";x,y")
    with pytest.raises(ValueError, match="limit is 1"):
        parse_linked_identities("a,b;c,d", max_entries=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("a+b,i", (("i", "a+b"),), id="plus-is-literal-not-space"),
        pytest.param("a%20b,i", (("i", "a b"),), id="encoded-space"),
        pytest.param("%2c%3b,i", (("i", ",;"),), id="lowercase-hex"),
        pytest.param("%25,i", (("i", "%"),), id="encoded-percent"),
        pytest.param("%E2%82%AC,i", (("i", "€"),), id="encoded-utf8"),
        pytest.param("€,i", (("i", "€"),), id="raw-unicode"),
        pytest.param("a,i;a,i", (("i", "a"), ("i", "a")), id="order-and-duplicates-kept"),
    ],
)
def test_parse_decodes_percent_escapes(value: str, expected: tuple[tuple[str, str], ...]) -> None:
    assert parse_linked_identities(value) == expected


def test_format_is_sub_first_and_fully_encoded() -> None:
    assert format_linked_identities([("https://i.example/a b", "u,1;2")]) == "u%2C1%3B2,https%3A%2F%2Fi.example%2Fa%20b"


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        pytest.param([], "at least one", id="no-identities"),
        pytest.param([("", "sub")], "iss must be a non-empty string", id="empty-iss"),
        pytest.param([("iss", "")], "sub must be a non-empty string", id="empty-sub"),
        pytest.param([("iss", None)], "sub must be a non-empty string", id="non-string"),
        pytest.param([("iss",)], r"\(iss, sub\) pair", id="not-a-pair"),
        pytest.param([["iss", "sub"]], r"\(iss, sub\) pair", id="list-not-tuple"),
        pytest.param([("iss", "a\ud800")], "UTF-8", id="lone-surrogate"),
    ],
)
def test_format_refuses_bad_identities(ids: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_linked_identities(ids)  # type: ignore[arg-type]


PARTS = st.text(
    alphabet=st.one_of(st.sampled_from(",;%+ :/|\t\n~"), st.characters(codec="utf-8")), min_size=1, max_size=20
)
CANONICAL_CHARACTERS = set(string.ascii_letters + string.digits + "-._~%,;")


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.tuples(PARTS, PARTS), min_size=1, max_size=5))
def test_format_then_parse_round_trips(ids: list[tuple[str, str]]) -> None:
    value = format_linked_identities(ids)
    assert set(value) <= CANONICAL_CHARACTERS
    assert parse_linked_identities(value) == tuple(ids)


@settings(max_examples=200, deadline=None)
@given(value=st.text(alphabet=st.sampled_from("ab,;%2Cf +\u00e9"), max_size=24))
def test_parse_either_refuses_or_returns_non_empty_parts(value: str) -> None:
    try:
        parsed = parse_linked_identities(value)
    except ValueError:
        return
    assert parsed and all(iss and sub for iss, sub in parsed)
    assert len(parsed) == value.count(";") + 1
