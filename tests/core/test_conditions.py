"""Visa conditions: glob and match types, clause and DNF evaluation (broker.core.conditions).

Driven by the vectors in tests/data/ga4gh/vectors.json (pytest ids = vector ids), plus
adversarial glob inputs (GA-15), fnmatch differences, the threat-model cases GA-01/02/03/05 and
property tests against independent reference implementations written here.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from broker.core import conditions as conditions_module
from broker.core.conditions import (
    CONDITION_MEMBERS,
    MAX_CLAUSE_MEMBERS,
    MAX_CONDITION_CLAUSES,
    MAX_PATTERN_LENGTH,
    PATTERN_CACHE_SIZE,
    POLICY_MEMBERS,
    ConstMatcher,
    GlobMatcher,
    SplitPatternMatcher,
    compile_matcher,
    compile_pattern,
    conditions_from_claim,
    evaluate_conditions,
    satisfies_clause,
)
from broker.core.identity_graph import IdentityGraph
from broker.core.linked_identities import format_linked_identities
from broker.core.models import Visa, VisaObject
from tests.core import vectors

HOLDER = ("https://broker.test/oidc", "holder-1")
FAR_FUTURE = 2_000_000_000


def make_visa(
    obj: dict[str, Any], *, identity: tuple[str, str] = HOLDER, exp: int = FAR_FUTURE, iat: int = 1000
) -> Visa:
    """A Visa record from a visa-object dict as the vectors write it (conditions parsed strictly)."""
    conditions = conditions_from_claim(obj["conditions"]) if "conditions" in obj else None
    return Visa(
        iss=identity[0],
        sub=identity[1],
        iat=iat,
        exp=exp,
        visa=VisaObject(
            type=obj["type"],
            asserted=obj.get("asserted", 1),
            value=obj["value"],
            source=obj["source"],
            by=obj.get("by"),
            conditions=conditions,
        ),
    )


def conditioned(conditions: list[Any], *, identity: tuple[str, str] = HOLDER, exp: int = FAR_FUTURE) -> Visa:
    """A ControlledAccessGrants visa carrying ``conditions``."""
    return make_visa(
        {
            "type": "ControlledAccessGrants",
            "value": "https://ega.example/datasets/EGAD0001",
            "source": "https://ega.example/dacs/EGAC0001",
            "by": "dac",
            "conditions": conditions,
        },
        identity=identity,
        exp=exp,
    )


def affiliation(
    value: str = "faculty@med.example.edu",
    *,
    by: str | None = "so",
    source: str = "https://grid.example/1",
    identity: tuple[str, str] = HOLDER,
    exp: int = FAR_FUTURE,
) -> Visa:
    obj: dict[str, Any] = {"type": "AffiliationAndRole", "value": value, "source": source}
    if by is not None:
        obj["by"] = by
    return make_visa(obj, identity=identity, exp=exp)


AFFILIATION_CONDITION = [[{"type": "AffiliationAndRole", "value": "const:faculty@med.example.edu", "by": "const:so"}]]


# --- reference implementations (tests only): regex translation of the glob, brute-force DNF ---


def reference_glob(glob: str, value: str) -> bool:
    """Spec glob via the regex translation the digest describes (fine for small test inputs)."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in glob)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def reference_member(spec: str, actual: str | None) -> bool:
    if actual is None or ":" not in spec:
        return False
    prefix, suffix = spec.split(":", 1)
    if prefix == "const":
        return actual == suffix
    if prefix == "pattern":
        return reference_glob(suffix, actual)
    if prefix == "split_pattern":
        return any(reference_glob(suffix, piece) for piece in actual.split(";"))
    return False


def reference_clause(clause: tuple[tuple[str, str], ...], visa: Visa) -> bool:
    names = [name for name, _ in clause]
    if "type" not in names or len([n for n in names if n != "type"]) == 0:
        return False
    claims = {"value": visa.visa.value, "source": visa.visa.source, "by": visa.visa.by}
    for name, spec in clause:
        if name == "type":
            if spec != visa.visa.type:
                return False
        elif name not in claims or not reference_member(spec, claims[name]):
            return False
    return True


def brute_force_met(visa: Visa, candidates: list[Visa]) -> bool:
    usable = [c for c in candidates if not c.visa.conditions]
    return any(
        all(any(reference_clause(clause, c) for c in usable) for clause in alternative)
        for alternative in visa.visa.conditions or ()
    )


def brute_force_best_expiry(visa: Visa, candidates: list[Visa]) -> int | None:
    """Latest achievable effective expiry over all ways to meet the conditions (None if unmet)."""
    usable = [c for c in candidates if not c.visa.conditions]
    best = None
    for alternative in visa.visa.conditions or ():
        per_clause = [
            max((c.exp for c in usable if reference_clause(clause, c)), default=None) for clause in alternative
        ]
        if per_clause and None not in per_clause:
            value = min(e for e in per_clause if e is not None)
            best = value if best is None else max(best, value)
    return best


# --- vectors: pattern matching, match types, split_pattern ---

PATTERN_CASES = [
    pytest.param(case["pattern"], case["input"], case["match"], id=f"pattern-matching-vectors-{index}")
    for index, case in enumerate(vectors.data("pattern-matching-vectors"))
]


@pytest.mark.parametrize(("glob", "value", "expected"), PATTERN_CASES)
def test_pattern_matching_vector(glob: str, value: str, expected: bool) -> None:
    assert compile_pattern(glob).matches(value) is expected
    matcher = compile_matcher(f"pattern:{glob}")
    assert matcher is not None
    assert matcher.matches(value) is expected


MATCH_TYPE_CASES = [
    pytest.param(case["clause_value"], case["visa_value"], case["match"], id=f"match-type-vectors-{index}")
    for index, case in enumerate(vectors.data("match-type-vectors"))
]


@pytest.mark.parametrize(("clause_value", "visa_value", "expected"), MATCH_TYPE_CASES)
def test_match_type_vector(clause_value: str, visa_value: str, expected: bool) -> None:
    matcher = compile_matcher(clause_value)
    assert (matcher is not None and matcher.matches(visa_value)) is expected
    visa = make_visa({"type": "ResearcherStatus", "value": visa_value, "source": "https://no.organization"})
    assert satisfies_clause((("type", "ResearcherStatus"), ("value", clause_value)), visa) is expected


SPLIT_IDS = vectors.ids_with_prefix("split-pattern-")


@pytest.mark.parametrize("vector_id", SPLIT_IDS, ids=SPLIT_IDS)
def test_split_pattern_vector(vector_id: str) -> None:
    case = vectors.data(vector_id)
    expected = case["expected_match"] if "expected_match" in case else case["strict_evaluation_result"]
    matcher = compile_matcher(case["condition_clause_value"])
    assert isinstance(matcher, SplitPatternMatcher)
    assert matcher.matches(case["visa_claim_value"]) is expected
    # The same verdict through a whole clause on a LinkedIdentities visa carrying that value.
    visa = make_visa({"type": "LinkedIdentities", "value": case["visa_claim_value"], "source": "https://b.example"})
    clause = (("type", "LinkedIdentities"), ("value", case["condition_clause_value"]))
    assert satisfies_clause(clause, visa) is expected


def test_split_pattern_example_as_written_is_a_spec_erratum() -> None:
    case = vectors.data("split-pattern-example-as-written")
    matcher = compile_matcher(case["condition_clause_value"])
    assert case["spec_claims_match"] is True
    assert matcher is not None and matcher.matches(case["visa_claim_value"]) is False


def test_split_pattern_example_corrected_matches_only_the_second_piece() -> None:
    case = vectors.data("split-pattern-example-corrected")
    pieces = case["visa_claim_value"].split(";")
    assert pieces == case["split_result"]
    glob = compile_pattern(case["condition_clause_value"].partition(":")[2])
    assert [glob.matches(piece) for piece in pieces] == [False, True, False]


def test_split_pattern_matches_our_canonical_linked_identities_encoding() -> None:
    value = format_linked_identities([("https://example1.org", "001"), ("https://example2.org", "123")])
    assert compile_matcher("split_pattern:123,https%3A%2F%2Fexample?.org").matches(value)  # type: ignore[union-attr]
    assert not compile_matcher("split_pattern:123,https:%2F%2Fexample?.org").matches(value)  # type: ignore[union-attr]


# --- vectors: DNF evaluation and the example passport ---

DNF_IDS = vectors.ids_with_prefix("dnf-eval-")


@pytest.mark.parametrize("vector_id", DNF_IDS, ids=DNF_IDS)
def test_dnf_eval_vector(vector_id: str) -> None:
    case = vectors.data(vector_id)
    visa = conditioned(case["conditions"])
    others = [make_visa(obj, exp=FAR_FUTURE - index) for index, obj in enumerate(case["other_visa_objects"])]
    met, used = evaluate_conditions(visa, others)
    assert met is case["expected_conditions_met"]
    assert met is brute_force_met(visa, others)
    if met:
        assert used and all(u in others and not u.conditioned for u in used)
    else:
        assert used == ()


def test_dnf_eval_vectors_cover_a_to_h() -> None:
    assert [f"dnf-eval-{letter}" for letter in "ABCDEFGH"] == DNF_IDS


def example_passport() -> list[Visa]:
    """The spec's example passport as Visa records; visas 1-3 (no iss/sub in the spec) get HOLDER."""
    visas = []
    for payload in vectors.data("example-passport-claim-v1.2")["ga4gh_passport_v1"]:
        identity = (payload["iss"], payload["sub"]) if "iss" in payload else HOLDER
        visas.append(make_visa(payload["ga4gh_visa_v1"], identity=identity, exp=payload["exp"], iat=payload["iat"]))
    return visas


def test_example_passport_visa3_conditions_met_by_visa1() -> None:
    expected = vectors.vector("example-passport-claim-v1.2")["expected"]
    visas = example_passport()
    visa3 = visas[2]
    met, used = evaluate_conditions(visa3, visas)
    assert met is expected["visa3_conditions_satisfied_by_visa1"]
    assert used == (visas[0],)
    assert min(v.exp for v in (visa3, *used)) == expected["min_exp_if_visas_1_and_3_used"]
    # The same with the identity graph the passport's own LinkedIdentities visa builds.
    graph = IdentityGraph.from_visas([visas[5]])
    assert evaluate_conditions(visa3, visas, graph=graph) == (True, (visas[0],))
    # And without visa 1 nothing else in the passport meets them.
    assert evaluate_conditions(visa3, visas[1:]) == (False, ())


def test_example_passport_visa3_parses_as_two_alternatives() -> None:
    raw = vectors.data("example-passport-claim-v1.2")["ga4gh_passport_v1"][2]["ga4gh_visa_v1"]["conditions"]
    parsed = conditions_from_claim(raw)
    assert [len(alternative) for alternative in parsed] == [1, 1]
    assert dict(parsed[1][0])["by"] == "const:system"


VARIANT_CASES = [
    pytest.param(case["visa1_ga4gh_visa_v1"], case["expected"], id=f"example-passport-condition-variants-{index}")
    for index, case in enumerate(vectors.data("example-passport-condition-variants"))
]


@pytest.mark.parametrize(("visa1_object", "expected"), VARIANT_CASES)
def test_example_passport_condition_variant(visa1_object: dict[str, Any], expected: bool) -> None:
    visas = example_passport()
    visas[0] = make_visa(visa1_object, exp=visas[0].exp)
    met, used = evaluate_conditions(visas[2], visas)
    assert met is expected
    assert used == ((visas[0],) if expected else ())


@pytest.mark.parametrize("vector_id", ["conditions-nonnormative-example"])
def test_conditions_nonnormative_example_parses_in_order_and_round_trips(vector_id: str) -> None:
    raw = vectors.data(vector_id)["conditions"]
    parsed = conditions_from_claim(raw)
    assert [len(alternative) for alternative in parsed] == [2, 1]
    assert parsed[0][0] == (
        ("type", "AffiliationAndRole"),
        ("value", "const:faculty@uni-heidelberg.de"),
        ("by", "const:so"),
    )
    assert parsed[1][0][-1] == ("by", "const:system")
    visa_object = VisaObject(
        type="ControlledAccessGrants", asserted=1, value="v", source="s", by="dac", conditions=parsed
    )
    assert visa_object.to_claim()["conditions"] == raw


@pytest.mark.parametrize("vector_id", ["conditions-template"])
def test_conditions_template_is_refused_for_its_typeless_clause(vector_id: str) -> None:
    raw = vectors.data(vector_id)["conditions"]
    with pytest.raises(ValueError, match=r"conditions\[0\]\[1\] has no 'type' member"):
        conditions_from_claim(raw)


@pytest.mark.parametrize("vector_id", ["conditions-template"])
def test_conditions_template_placeholders_never_match(vector_id: str) -> None:
    raw = vectors.data(vector_id)["conditions"]
    parsed = conditions_from_claim([[raw[0][0]], raw[1]])  # the template minus its comment clause
    visa = Visa(
        iss=HOLDER[0],
        sub=HOLDER[1],
        iat=1,
        exp=FAR_FUTURE,
        visa=VisaObject(type="ControlledAccessGrants", asserted=1, value="v", source="s", by="dac", conditions=parsed),
    )
    candidate = make_visa({"type": "<visa-type>", "value": "<match-value>", "source": "<match-value>"})
    assert evaluate_conditions(visa, [candidate]) == (False, ())


def test_vectors_file_is_a_copy_kept_in_the_repository() -> None:
    assert vectors.VECTORS_PATH.is_relative_to(Path(__file__).resolve().parent.parent)
    assert "shared" not in vectors.VECTORS_PATH.parts


# --- glob: fnmatch differences and adversarial inputs (GA-15) ---


@pytest.mark.parametrize(
    ("glob", "value", "expected"),
    [
        pytest.param("[a]", "a", False, id="brackets-are-not-a-class"),
        pytest.param("[a]", "[a]", True, id="brackets-are-literal"),
        pytest.param("[!a]", "b", False, id="no-negated-class"),
        pytest.param("a\\*", "a\\xyz", True, id="backslash-is-literal-and-does-not-escape-star"),
        pytest.param("a\\*", "a*", False, id="backslash-needs-its-own-character"),
        pytest.param("a\\?", "a\\b", True, id="backslash-does-not-escape-question-mark"),
        pytest.param("FACULTY@*", "faculty@x", False, id="case-sensitive"),
        pytest.param("a?b", "a\nb", True, id="question-mark-matches-newline"),
        pytest.param("https://*", "https://a/b/c", True, id="star-crosses-slashes"),
        pytest.param("a??", "aé€", True, id="question-mark-is-one-code-point"),
        pytest.param("a**b", "ab", True, id="collapsed-stars-match-empty"),
        pytest.param("", "", True, id="empty-glob-matches-empty"),
        pytest.param("", "x", False, id="empty-glob-matches-only-empty"),
        pytest.param("abc", "abcd", False, id="full-string-not-prefix"),
        pytest.param("bcd", "abcd", False, id="full-string-not-suffix"),
    ],
)
def test_glob_is_not_fnmatch(glob: str, value: str, expected: bool) -> None:
    assert compile_pattern(glob).matches(value) is expected


def _imported_modules(module_file: str) -> set[str]:
    tree = ast.parse(Path(module_file).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_ga15_glob_matcher_uses_no_regex_or_fnmatch_engine() -> None:
    imported = _imported_modules(conditions_module.__file__)
    assert not imported & {"re", "regex", "fnmatch", "glob"}
    assert isinstance(compile_pattern("*a?b*"), GlobMatcher)


ADVERSARIAL = [
    pytest.param("*" * 50 + "a", "b" * 10_000, False, id="many-stars-then-a-vs-b"),
    pytest.param("*a" * 30 + "b", "a" * 10_000, False, id="star-a-repeated-then-b"),
    pytest.param("a*" * 40 + "c", "a" * 10_000 + "b", False, id="a-star-repeated-then-c"),
    pytest.param("*" + "?" * 200 + "*x", "y" * 10_000, False, id="wide-question-marks"),
    pytest.param("*a*a*a*a*a*a*a*a*a*a*", "a" * 10_000, True, id="many-stars-match"),
    pytest.param("*" + "ab" * 500 + "*", "ab" * 5_000, True, id="long-middle-segment"),
]


@pytest.mark.parametrize(("glob", "value", "expected"), ADVERSARIAL)
def test_ga15_glob_is_one_pass_over_the_value(glob: str, value: str, expected: bool) -> None:
    """Complexity by construction: at most len(value) steps, each on a state of len(glob)+1 bits at most."""
    matcher = compile_pattern(glob)
    trace = matcher.trace(value)
    assert trace.matched is expected
    assert trace.steps <= len(value)
    assert matcher.state_bits <= len(glob) + 1


def test_ga15_consecutive_stars_collapse_into_one_state() -> None:
    assert compile_pattern("*" * 50 + "a").state_bits == 3  # states: before '*', before 'a', accept


def test_ga15_a_dead_automaton_stops_reading() -> None:
    trace = compile_pattern("a*").trace("b" + "a" * 10_000)
    assert trace == conditions_module.GlobTrace(False, 1)


def test_ga15_length_prefilter_reads_nothing() -> None:
    assert compile_pattern("?" * 20).trace("x" * 10_000).steps == 0
    assert compile_pattern("a?*?b").trace("ab").steps == 0


def test_ga15_over_long_glob_is_refused_and_never_matches() -> None:
    glob = "*" * (MAX_PATTERN_LENGTH + 1)
    with pytest.raises(ValueError, match="limit"):
        compile_pattern(glob)
    assert compile_matcher(f"pattern:{glob}") is None
    assert compile_matcher(f"split_pattern:{glob}") is None
    clause = (("type", "AffiliationAndRole"), ("value", f"pattern:{glob}"))
    assert not satisfies_clause(clause, affiliation())


def test_ga15_non_string_inputs_never_match_and_never_raise() -> None:
    assert compile_matcher(None) is None  # type: ignore[arg-type]
    assert compile_pattern("*").matches(None) is False  # type: ignore[arg-type]
    assert ConstMatcher("1").matches(1) is False  # type: ignore[arg-type]
    assert SplitPatternMatcher(compile_pattern("*")).matches(b"a") is False  # type: ignore[arg-type]
    clause = (("type", "AffiliationAndRole"), ("value", 5))
    assert satisfies_clause(clause, affiliation()) is False  # type: ignore[arg-type]


def test_compiled_patterns_are_cached_in_a_bounded_lru() -> None:
    assert compile_pattern("cache-me-*") is compile_pattern("cache-me-*")
    assert compile_pattern.cache_info().maxsize == PATTERN_CACHE_SIZE


# --- compile_matcher prefixes ---


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        pytest.param("const:a:b", "a:b", True, id="split-at-first-colon"),
        pytest.param("const:", "", True, id="const-empty"),
        pytest.param("const:*", "anything", False, id="const-has-no-wildcards"),
        pytest.param("pattern:https://*", "https://x", True, id="pattern-suffix-with-colon"),
        pytest.param("split_pattern:b", "a;b;c", True, id="split-any-piece"),
        pytest.param("split_pattern:a;b", "a;b", False, id="split-pieces-never-contain-separator"),
        pytest.param("split_pattern:", "a;;c", True, id="split-empty-piece"),
        pytest.param("pattern:a;b", "a;b", True, id="pattern-does-not-split"),
    ],
)
def test_match_types(spec: str, value: str, expected: bool) -> None:
    matcher = compile_matcher(spec)
    assert matcher is not None
    assert matcher.matches(value) is expected


@pytest.mark.parametrize("spec", ["regex:.*", "Const:a", "CONST:a", " const:a", "const", "", "glob:*", "split:a"])
def test_unknown_or_missing_prefix_never_matches(spec: str) -> None:
    assert compile_matcher(spec) is None


# --- conditions_from_claim: shape errors ---


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(None, "array of arrays", id="null"),
        pytest.param({"type": "X"}, "array of arrays", id="object"),
        pytest.param("const:x", "array of arrays", id="string"),
        pytest.param([{"type": "X", "value": "const:x"}], r"conditions\[0\] must be an array", id="missing-inner-list"),
        pytest.param([[]], r"conditions\[0\] is an empty array", id="empty-alternative"),
        pytest.param([[["type", "X"]]], r"conditions\[0\]\[0\] must be a clause object", id="clause-not-object"),
        pytest.param([[{}]], r"conditions\[0\]\[0\] has no 'type'", id="empty-clause"),
        pytest.param([[{"value": "const:x"}]], "has no 'type'", id="missing-type"),
        pytest.param([[{"type": "X"}]], "at least one visa object claim besides 'type'", id="type-only"),
        pytest.param([[{"type": "X", "value": 1}]], r"\.value must be a string, not a number", id="number-member"),
        pytest.param([[{"type": None, "value": "const:x"}]], r"\.type must be a string, not null", id="null-type"),
        pytest.param([[{"type": "X", "by": ["so"]}]], "not an array", id="array-member"),
        pytest.param(
            [[{"type": "X", "value": "const:x", "asserted": "const:1"}]],
            "must not constrain 'asserted'",
            id="asserted-member",
        ),
        pytest.param([[{"type": "X", "conditions": "const:x"}]], "must not constrain 'conditions'", id="nested"),
        pytest.param(
            [[{"type": "X", "value": "const:x"}], [{"type": "Y", "value": True}]],
            r"conditions\[1\]\[0\]\.value must be a string, not a boolean",
            id="error-in-second-alternative",
        ),
        pytest.param(
            [[{"type": "X", "value": "const:x"}] for _ in range(MAX_CONDITION_CLAUSES + 1)],
            "more than",
            id="too-many-clauses",
        ),
        pytest.param(
            [[{"type": "X", **{f"m{i}": "const:x" for i in range(MAX_CLAUSE_MEMBERS)}}]], "limit", id="too-many-members"
        ),
    ],
)
def test_conditions_from_claim_refuses_bad_shapes(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        conditions_from_claim(raw)


def test_conditions_from_claim_keeps_unknown_prefixes_and_members_for_evaluation() -> None:
    parsed = conditions_from_claim([[{"type": "X", "value": "regex:.*", "custom": "const:y"}]])
    assert parsed == (((("type", "X"), ("value", "regex:.*"), ("custom", "const:y")),),)


# --- threat model ---


def test_ga01_conditioned_grant_needs_the_matching_affiliation() -> None:
    grant = conditioned(AFFILIATION_CONDITION)
    matching = affiliation()
    assert evaluate_conditions(grant, [matching]) == (True, (matching,))
    assert evaluate_conditions(grant, []) == (False, ())
    assert evaluate_conditions(grant, [affiliation(by="system")]) == (False, ())
    assert evaluate_conditions(grant, [affiliation("student@med.example.edu")]) == (False, ())


def test_ga01_a_conditioned_visa_never_satisfies_another() -> None:
    grant = conditioned(AFFILIATION_CONDITION)
    conditioned_match = make_visa(
        {
            "type": "AffiliationAndRole",
            "value": "faculty@med.example.edu",
            "source": "https://grid.example/1",
            "by": "so",
            "conditions": [[{"type": "ResearcherStatus", "value": "pattern:*"}]],
        }
    )
    assert evaluate_conditions(grant, [conditioned_match]) == (False, ())


def test_ga01_a_visa_never_satisfies_its_own_conditions() -> None:
    looped = conditioned([[{"type": "ControlledAccessGrants", "value": "pattern:*"}]])
    assert evaluate_conditions(looped, [looped]) == (False, ())


def test_ga01_unknown_prefix_fails_only_its_own_clause() -> None:
    grant = conditioned([[{"type": "AffiliationAndRole", "value": "regex:.*"}], AFFILIATION_CONDITION[0]])
    matching = affiliation()
    assert evaluate_conditions(grant, [matching]) == (True, (matching,))
    only_regex = conditioned([[{"type": "AffiliationAndRole", "value": "regex:.*"}]])
    assert evaluate_conditions(only_regex, [matching]) == (False, ())


def test_ga01_every_clause_of_an_alternative_must_be_met() -> None:
    grant = conditioned(
        [
            [
                AFFILIATION_CONDITION[0][0],
                {"type": "ResearcherStatus", "value": "const:https://doi.org/10.1038/s41431-018-0219-y"},
            ]
        ]
    )
    status = make_visa(
        {
            "type": "ResearcherStatus",
            "value": "https://doi.org/10.1038/s41431-018-0219-y",
            "source": "https://x.example",
        }
    )
    matching = affiliation()
    assert evaluate_conditions(grant, [matching]) == (False, ())
    assert evaluate_conditions(grant, [status]) == (False, ())
    assert evaluate_conditions(grant, [status, matching]) == (True, (matching, status))


def test_ga01_all_members_of_one_clause_must_hit_the_same_visa() -> None:
    grant = conditioned(AFFILIATION_CONDITION)  # value faculty@med.example.edu AND by so, on one visa
    split_across = [affiliation(by="system"), affiliation("student@med.example.edu", by="so")]
    assert evaluate_conditions(grant, split_across) == (False, ())


def test_ga01_empty_conditions_mean_unconditioned() -> None:
    assert conditions_from_claim([]) == ()
    visa = conditioned([])
    assert not visa.conditioned
    assert evaluate_conditions(visa, []) == (True, ())
    plain = affiliation()
    assert evaluate_conditions(plain, []) == (True, ())


def test_ga01_hand_built_empty_alternative_is_never_vacuously_true() -> None:
    grant = Visa(
        iss="i",
        sub="s",
        iat=1,
        exp=2,
        visa=VisaObject(type="ControlledAccessGrants", asserted=1, value="v", source="s", by="dac", conditions=((),)),
    )
    assert evaluate_conditions(grant, [affiliation()]) == (False, ())


@pytest.mark.parametrize(
    "clause",
    [
        pytest.param((("value", "const:faculty@med.example.edu"),), id="no-type"),
        pytest.param((("type", "AffiliationAndRole"),), id="type-only"),
    ],
)
def test_ga01_incorrect_clause_never_matches(clause: tuple[tuple[str, str], ...]) -> None:
    assert satisfies_clause(clause, affiliation()) is False


@pytest.mark.parametrize(
    "wanted",
    [
        pytest.param("const:https://ega.example/EGAD0001", id="prefix-of-the-real-id"),
        pytest.param("const:https://EGA.example/EGAD00012", id="host-case"),
        pytest.param("const:https://ega.example/EGAD00012/", id="trailing-slash"),
        pytest.param("const:https%3A%2F%2Fega.example%2FEGAD00012", id="percent-encoded"),
        pytest.param("const:https://ega.example/egad00012", id="path-case"),
        pytest.param("const: https://ega.example/EGAD00012", id="leading-space"),
    ],
)
def test_ga02_const_is_exact_and_case_sensitive(wanted: str) -> None:
    visa = make_visa(
        {
            "type": "ControlledAccessGrants",
            "value": "https://ega.example/EGAD00012",
            "source": "https://ega.example/dacs/1",
            "by": "dac",
        }
    )
    assert satisfies_clause((("type", "ControlledAccessGrants"), ("value", wanted)), visa) is False
    exact = (("type", "ControlledAccessGrants"), ("value", "const:https://ega.example/EGAD00012"))
    assert satisfies_clause(exact, visa) is True


@settings(max_examples=200, deadline=None)
@given(expected=st.text(max_size=40), other=st.text(max_size=40))
def test_ga02_const_matches_exactly_the_same_string(expected: str, other: str) -> None:
    matcher = compile_matcher(f"const:{expected}")
    assert matcher is not None
    assert matcher.matches(expected)
    assert matcher.matches(other) is (other == expected)
    for variant in (expected + "/", expected.swapcase(), expected[:-1], "x" + expected):
        assert matcher.matches(variant) is (variant == expected)


@pytest.mark.parametrize(
    "clause_type",
    [
        pytest.param("const:AffiliationAndRole", id="type-takes-no-prefix"),
        pytest.param("affiliationandrole", id="type-case"),
        pytest.param("AffiliationAndRole ", id="ga04-trailing-space"),
        pytest.param("Affiliation", id="type-prefix"),
    ],
)
def test_ga02_clause_type_is_compared_exactly(clause_type: str) -> None:
    clause = (("type", clause_type), ("value", "const:faculty@med.example.edu"))
    assert satisfies_clause(clause, affiliation()) is False
    assert satisfies_clause((("type", "AffiliationAndRole"), clause[1]), affiliation()) is True


def test_ga02_absent_by_is_unknown_and_fails_any_by_member() -> None:
    for spec in ("const:so", "pattern:*", "split_pattern:*", "const:"):
        clause = (("type", "AffiliationAndRole"), ("by", spec))
        assert satisfies_clause(clause, affiliation(by=None)) is False
        assert satisfies_clause(clause, affiliation(by="so")) is (spec != "const:")


def test_issuer_conditions_cannot_constrain_jwt_claims_but_policy_rules_can() -> None:
    visa = affiliation(identity=("https://idp.example", "alice"))
    clause = (("type", "AffiliationAndRole"), ("iss", "const:https://idp.example"))
    assert "iss" not in CONDITION_MEMBERS
    assert satisfies_clause(clause, visa) is False
    assert satisfies_clause(clause, visa, members=POLICY_MEMBERS) is True
    assert satisfies_clause((("type", "AffiliationAndRole"), ("sub", "pattern:al*")), visa, members=POLICY_MEMBERS)
    custom = (("type", "AffiliationAndRole"), ("value", "pattern:*"), ("custom_claim", "pattern:*"))
    assert satisfies_clause(custom, visa, members=POLICY_MEMBERS) is False


def test_ga03_condition_evaluation_opens_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network I/O during condition evaluation")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    url = "http://127.0.0.1:9/terms"
    grant = conditioned([[{"type": "AcceptedTermsAndPolicies", "value": f"const:{url}", "source": "pattern:http://*"}]])
    terms = make_visa({"type": "AcceptedTermsAndPolicies", "value": url, "source": "http://127.0.0.1:9/", "by": "self"})
    assert evaluate_conditions(grant, [terms]) == (True, (terms,))
    for module in ("conditions", "linked_identities", "identity_graph"):
        imported = _imported_modules(str(Path(conditions_module.__file__).with_name(f"{module}.py")))
        assert not imported & {"socket", "http", "requests", "urllib3", "ssl"}, module


def test_ga05_used_visas_include_condition_satisfiers_and_their_links() -> None:
    bob = ("https://issuer-x.example", "bob")
    grant = conditioned(AFFILIATION_CONDITION, exp=5_000)
    satisfier = affiliation(identity=bob, exp=4_000)
    link = make_visa(
        {
            "type": "LinkedIdentities",
            "value": format_linked_identities([bob]),
            "source": "https://broker.test/oidc",
            "by": "system",
        },
        exp=3_000,
    )
    graph = IdentityGraph.from_visas([link])
    met, used = evaluate_conditions(grant, [satisfier, link], graph=graph)
    assert (met, used) == (True, (satisfier, link))
    assert min(v.exp for v in (grant, *used)) == 3_000


def test_ga05_prefers_the_satisfier_that_expires_last() -> None:
    grant = conditioned(AFFILIATION_CONDITION)
    soon, late, later_but_wrong = affiliation(exp=1_000), affiliation(exp=9_000), affiliation(by="peer", exp=99_000)
    assert evaluate_conditions(grant, [soon, later_but_wrong, late]) == (True, (late,))
    assert evaluate_conditions(grant, [affiliation(exp=7), affiliation(exp=7)])[1] == (affiliation(exp=7),)


def test_ga05_prefers_the_alternative_whose_earliest_expiry_is_latest() -> None:
    status_clause = {"type": "ResearcherStatus", "value": "const:rs"}
    grant = conditioned([[AFFILIATION_CONDITION[0][0], status_clause], [status_clause]])
    status = make_visa({"type": "ResearcherStatus", "value": "rs", "source": "https://s.example"}, exp=8_000)
    assert evaluate_conditions(grant, [affiliation(exp=2_000), status]) == (True, (status,))


def test_jwt17_candidate_of_an_unlinked_identity_is_not_used() -> None:
    bob = ("https://issuer-x.example", "bob")
    grant = conditioned(AFFILIATION_CONDITION)
    transplanted = affiliation(identity=bob)
    assert evaluate_conditions(grant, [transplanted], graph=IdentityGraph.from_visas([])) == (False, ())
    same_identity = affiliation()
    assert evaluate_conditions(grant, [transplanted, same_identity], graph=IdentityGraph.from_visas([])) == (
        True,
        (same_identity,),
    )


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(("https://issuer-x.example", "bob"), id="other-issuer-other-subject"),
        pytest.param((HOLDER[0], "holder-2"), id="same-issuer-other-subject"),
        pytest.param(("https://issuer-x.example", HOLDER[1]), id="other-issuer-same-subject"),
    ],
)
def test_jwt17_without_a_graph_only_the_conditioned_visas_own_identity_counts(other: tuple[str, str]) -> None:
    """The default is the safe one: no graph means nothing is linked (fail closed)."""
    grant = conditioned(AFFILIATION_CONDITION)
    transplanted = affiliation(identity=other)
    assert evaluate_conditions(grant, [transplanted]) == (False, ())
    same_identity = affiliation(exp=1_000)  # expires first, yet it is the only one that may be used
    assert evaluate_conditions(grant, [transplanted, same_identity]) == (True, (same_identity,))


def test_jwt17_an_explicit_graph_still_combines_linked_identities() -> None:
    bob = ("https://issuer-x.example", "bob")
    grant = conditioned(AFFILIATION_CONDITION)
    satisfier = affiliation(identity=bob)
    link = make_visa(
        {
            "type": "LinkedIdentities",
            "value": format_linked_identities([bob]),
            "source": "https://broker.test/oidc",
            "by": "system",
        }
    )
    assert evaluate_conditions(grant, [satisfier, link]) == (False, ())
    assert evaluate_conditions(grant, [satisfier, link], graph=IdentityGraph.from_visas([link])) == (
        True,
        (satisfier, link),
    )
    # A graph linking other people does not link the grant's holder to bob.
    unrelated = make_visa(
        {
            "type": "LinkedIdentities",
            "value": format_linked_identities([bob]),
            "source": "https://broker.test/oidc",
            "by": "system",
        },
        identity=("https://c.example", "c"),
    )
    assert evaluate_conditions(grant, [satisfier], graph=IdentityGraph.from_visas([unrelated])) == (False, ())


# --- property tests against the reference implementations ---

GLOB_ALPHABET = "ab?*[]\\.\n"
VALUE_ALPHABET = "ab[]\\.\n?*é"


@settings(max_examples=200, deadline=None)
@given(glob=st.text(alphabet=GLOB_ALPHABET, max_size=12), value=st.text(alphabet=VALUE_ALPHABET, max_size=20))
def test_glob_agrees_with_reference_regex(glob: str, value: str) -> None:
    trace = compile_pattern(glob).trace(value)
    assert trace.matched is reference_glob(glob, value)
    assert trace.steps <= len(value)


@settings(max_examples=200, deadline=None)
@given(
    glob=st.text(alphabet=GLOB_ALPHABET, max_size=8),
    value=st.lists(st.text(alphabet="ab?*.", max_size=5), max_size=4).map(";".join),
)
def test_split_pattern_agrees_with_reference(glob: str, value: str) -> None:
    matcher = compile_matcher(f"split_pattern:{glob}")
    assert matcher is not None
    assert matcher.matches(value) is reference_member(f"split_pattern:{glob}", value)


MEMBER_SPECS = st.sampled_from(
    ["const:a", "const:b", "pattern:*", "pattern:a*", "pattern:?", "split_pattern:b", "regex:a", "a", "const:"]
)
CLAUSES = st.builds(
    lambda type_, members: {"type": type_, **members},
    st.sampled_from(["T1", "T2"]),
    st.dictionaries(st.sampled_from(["value", "source", "by", "custom"]), MEMBER_SPECS, min_size=1, max_size=3),
)
CONDITIONS = st.lists(st.lists(CLAUSES, min_size=1, max_size=3), min_size=1, max_size=3)
CANDIDATES = st.lists(
    st.builds(
        lambda type_, value, source, by, exp, has_conditions: make_visa(
            {
                "type": type_,
                "value": value,
                "source": source,
                **({"by": by} if by is not None else {}),
                **({"conditions": [[{"type": "T1", "value": "pattern:*"}]]} if has_conditions else {}),
            },
            exp=exp,
        ),
        st.sampled_from(["T1", "T2", "T3"]),
        st.sampled_from(["a", "b", "ab", "a;b", "", "?"]),
        st.sampled_from(["a", "b"]),
        st.sampled_from([None, "a", "b", "so"]),
        st.integers(min_value=1, max_value=20),
        st.booleans(),
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(raw=CONDITIONS, candidates=CANDIDATES)
def test_dnf_evaluation_equals_brute_force(raw: list[Any], candidates: list[Visa]) -> None:
    visa = conditioned(raw)
    met, used = evaluate_conditions(visa, candidates)
    assert met is brute_force_met(visa, candidates)
    if not met:
        assert used == ()
        return
    assert all(u in candidates and not u.conditioned for u in used)
    assert len(set(used)) == len(used)
    # The used visas alone meet the conditions, and give the latest achievable effective expiry.
    assert brute_force_met(visa, list(used))
    assert min(u.exp for u in used) == brute_force_best_expiry(visa, candidates)


IDENTITIES = st.sampled_from(
    [HOLDER, (HOLDER[0], "other"), ("https://x.example", HOLDER[1]), ("https://x.example", "x")]
)


@settings(max_examples=100, deadline=None)
@given(raw=CONDITIONS, candidates=CANDIDATES, identities=st.lists(IDENTITIES, min_size=5, max_size=5))
@example(
    raw=[[{"type": "T1", "value": "pattern:*"}]],
    candidates=[make_visa({"type": "T1", "value": "a", "source": "a"})],
    identities=[("https://x.example", "x")] * 5,
)
def test_jwt17_no_graph_is_the_empty_graph(
    raw: list[Any], candidates: list[Visa], identities: list[tuple[str, str]]
) -> None:
    visa = conditioned(raw)
    moved = [dataclasses.replace(c, iss=who[0], sub=who[1]) for c, who in zip(candidates, identities, strict=False)]
    default = evaluate_conditions(visa, moved)
    assert default == evaluate_conditions(visa, moved, graph=IdentityGraph.from_visas([]))
    own = [c for c in moved if c.identity == HOLDER]
    assert default == evaluate_conditions(visa, own)
    assert all(u.identity == HOLDER for u in default[1])
