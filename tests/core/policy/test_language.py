"""The policy language: what each construct means once compiled (matchers, rules, templates)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.core.models import REGISTERED_ACCESS_DOI
from broker.core.policy.compile import globs_overlap
from broker.core.policy.errors import PolicyLoadError
from broker.core.policy.nodes import AllOfNode, AnyOfNode, Requirement, requirements
from tests.core.policy.support import GRANT_DATASET, HOLDER, LISTS, LS, NOW, bona_fide, link, load, visa


def decide(policy, visas, dataset="EGAD0001", **kw):
    kw.setdefault("holder", HOLDER)
    return policy.decide(visas, None, dataset, now=NOW, **kw)


def test_grant_dataset_compiles_to_one_requirement_with_dataset_filled_in(tmp_path: Path) -> None:
    policy = load(tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET})
    resolved, _ = policy.resolve("EGAD0001")
    assert resolved is not None
    rule = resolved.entry.rules["read"]
    assert isinstance(rule, Requirement)
    assert rule.type == "ControlledAccessGrants"
    assert "value const:https://ega.example/datasets/EGAD0001" in rule.describe(resolved.env)
    assert decide(policy, [visa()]).allow


def test_bare_text_is_exact_and_const_prefix_means_the_same(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "d.yaml": """
        datasets:
          A:
            description: bare role text
            read: {visa: {type: AffiliationAndRole, role: faculty, affiliation: const:ki.se}}
        """,
        },
    )
    assert decide(policy, [visa("AffiliationAndRole", "faculty@ki.se", "https://ki.se/", "system")], "A").allow
    assert not decide(policy, [visa("AffiliationAndRole", "Faculty@ki.se", "https://ki.se/", "system")], "A").allow
    assert not decide(policy, [visa("AffiliationAndRole", "faculty@ki.se.evil", "https://ki.se/", "system")], "A").allow


def test_matcher_lists_are_any_of_and_patterns_are_passport_globs(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "d.yaml": """
        datasets:
          A:
            description: any of several matchers
            read:
              visa:
                type: ResearcherStatus
                value: [const:https://x.example/a, "pattern:https://y.example/*/status", list:nordic]
        """,
        },
    )

    def status(value: str) -> bool:
        return decide(policy, [visa("ResearcherStatus", value, "https://s.example/", "so")], "A").allow

    assert status("https://x.example/a")
    assert status("https://y.example/anything/here/status")
    assert status("ki.se")  # list members are exact values too
    assert not status("https://y.example/x/status/")
    assert not status("https://x.example/a/")
    assert not status("KI.SE")


def test_pattern_brackets_are_literal_not_character_classes(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          A:
            description: brackets
            read: {visa: {type: ResearcherStatus, value: "pattern:https://x/[ab]?"}}
        """
        },
    )
    assert decide(policy, [visa("ResearcherStatus", "https://x/[ab]c", "https://s/", "so")], "A").allow
    assert not decide(policy, [visa("ResearcherStatus", "https://x/ac", "https://s/", "so")], "A").allow


def test_by_absent_never_meets_a_rule_naming_by(tmp_path: Path) -> None:
    policy = load(tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET})
    decision = decide(policy, [visa(by=None)])
    assert not decision.allow and decision.codes == ("no_matching_visa",)
    assert "has no 'by'" in decision.reasons[0].message


def test_issuers_are_exact_and_a_rule_without_issuers_accepts_any_verified_issuer(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          A:
            description: issuer pinned
            read: {visa: {type: ResearcherStatus, value: const:https://v/, issuers: https://iss.example/}}
          B:
            description: any issuer the trust settings accept
            read: {visa: {type: ResearcherStatus, value: const:https://v/}}
        """
        },
    )
    for iss, allowed in (
        ("https://iss.example/", True),
        ("https://iss.example", False),
        ("https://iss.example/x", False),
    ):
        v = visa("ResearcherStatus", "https://v/", "https://s/", "so", iss=iss, sub="alice")
        assert decide(policy, [v], "A", holder=(iss, "alice")).allow is allowed
        assert decide(policy, [v], "B", holder=(iss, "alice")).allow


def test_registered_access_shorthand_needs_both_visas_with_the_doi(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "d.yaml": """
        datasets:
          RA:
            description: registered access
            read:
              registered_access:
                issuers: list:ls_login
                status: {by: [so, system]}
        """,
        },
    )
    resolved, _ = policy.resolve("RA")
    assert resolved is not None
    rule = resolved.entry.rules["read"]
    assert isinstance(rule, AllOfNode)
    types = [r.type for r in requirements(rule)]
    assert types == ["AcceptedTermsAndPolicies", "ResearcherStatus"]
    assert all(r.checks[0][1].exact == {REGISTERED_ACCESS_DOI} for r in requirements(rule))
    holder = (LS, "alice")
    assert decide(policy, bona_fide(), "RA", holder=holder).allow
    assert not decide(policy, bona_fide()[:1], "RA", holder=holder).allow
    assert not decide(policy, bona_fide(status_by="peer"), "RA", holder=holder).allow
    assert not decide(
        policy, bona_fide(iss="https://other.example/"), "RA", holder=("https://other.example/", "alice")
    ).allow


def test_registered_access_with_no_settings_is_the_plain_ga4gh_definition(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          RA:
            description: registered access, any issuer and any by
            read: {registered_access: }
        """
        },
    )
    assert decide(policy, bona_fide(status_by="peer"), "RA", holder=(LS, "alice")).allow


def test_named_rules_with_variables_and_nested_references(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "rules.yaml": """
        rules:
          grant_from:
            description: a grant from one DAC
            rule:
              visa:
                type: ControlledAccessGrants
                value: const:https://ega.example/datasets/${dataset}
                source: const:https://ega-archive.org/dacs/${dac}
                by: dac
          first_dac:
            description: the first DAC's grant
            rule: {rule: grant_from, with: {dac: EGAC00001000001}}
        """,
            "d.yaml": """
        datasets:
          EGAD0001:
            description: granted by the first DAC, through two named rules
            read: {rule: first_dac}
          EGAD0002:
            description: a grant for another dataset's id
            read: {rule: grant_from, with: {dac: EGAC00001000001, dataset: EGAD0001}}
        """,
        },
    )
    assert decide(policy, [visa()]).allow
    assert not decide(policy, [visa(source="https://ega-archive.org/dacs/EGAC00001000002")]).allow
    # `with` can set ${dataset} too: EGAD0002's rule asks for EGAD0001's grant.
    assert decide(policy, [visa()], "EGAD0002").allow


def test_any_of_and_all_of_nest(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "d.yaml": """
        datasets:
          X:
            description: grant, or registered access plus Nordic faculty
            read:
              any_of:
                - visa: {type: ControlledAccessGrants, value: const:https://ega.example/datasets/X, by: dac}
                - all_of:
                    - registered_access:
                    - visa: {type: AffiliationAndRole, role: faculty, affiliation: list:nordic}
        """,
        },
    )
    resolved, _ = policy.resolve("X")
    assert resolved is not None and isinstance(resolved.entry.rules["read"], AnyOfNode)
    faculty = visa("AffiliationAndRole", "faculty@uio.no", "https://uio.no/", "system", iss=LS)
    holder = (LS, "alice")
    assert decide(
        policy, [visa("ControlledAccessGrants", "https://ega.example/datasets/X", iss=LS)], "X", holder=holder
    ).allow
    assert decide(policy, [*bona_fide(), faculty], "X", holder=holder).allow
    assert not decide(policy, bona_fide(), "X", holder=holder).allow
    assert not decide(policy, [faculty], "X", holder=holder).allow


def test_template_listed_ids_bind_their_own_variables(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "t.yaml": """
        templates:
          studies:
            description: each study granted by its own DAC
            datasets:
              EGAD0001: {dac: EGAC00001000001}
              EGAD0002: {dac: EGAC00001000002}
            read:
              visa:
                type: ControlledAccessGrants
                value: const:https://ega.example/datasets/${dataset}
                source: const:https://ega-archive.org/dacs/${dac}
                by: dac
        """,
        },
    )
    assert decide(policy, [visa()], "EGAD0001").allow
    assert not decide(policy, [visa(value="https://ega.example/datasets/EGAD0002")], "EGAD0002").allow
    assert decide(
        policy,
        [visa(value="https://ega.example/datasets/EGAD0002", source="https://ega-archive.org/dacs/EGAC00001000002")],
        "EGAD0002",
    ).allow


def test_template_pattern_covers_ids_and_explicit_entries_take_precedence(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "lists.yaml": LISTS,
            "t.yaml": """
        templates:
          range:
            description: all EGAD5 datasets
            dataset_pattern: EGAD5*
            read: {visa: {type: ControlledAccessGrants, value: "const:https://ega.example/datasets/${dataset}",
                          by: dac}}
        datasets:
          EGAD5000:
            description: an exception with its own rule
            read: {registered_access: }
        """,
        },
    )
    grant = visa(value="https://ega.example/datasets/EGAD5123")
    assert decide(policy, [grant], "EGAD5123").allow
    assert not decide(policy, [grant], "EGAD5124").allow
    assert decide(policy, [], "EGAD6000").codes == ("unknown_dataset",)
    assert not decide(policy, [visa(value="https://ega.example/datasets/EGAD5000")], "EGAD5000").allow
    assert any("takes precedence over template range" in w for w in policy.warnings)


def test_dataset_pattern_with_question_marks(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "t.yaml": """
        templates:
          fixed_width:
            description: exactly four digits
            dataset_pattern: DS????
            read: {visa: {type: ControlledAccessGrants, value: "const:urn:${dataset}", by: dac}}
        """
        },
    )
    assert decide(policy, [visa(value="urn:DS1234")], "DS1234").allow
    assert decide(policy, [visa(value="urn:DS12345")], "DS12345").codes == ("unknown_dataset",)


def test_data_use_term_may_come_from_a_template_variable(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "terms.yaml": """
        data_use_terms:
          DUO:0000042: {label: GRU}
          DUO:0000006: {label: HMB, parent: DUO:0000042}
        """,
            "t.yaml": """
        templates:
          by_use:
            description: studies with their own data use
            datasets:
              S1: {duo: DUO:0000042}
              S2: {duo: DUO:0000006}
            read: {visa: {type: ControlledAccessGrants, value: "const:urn:${dataset}", by: dac}}
            data_use: ${duo}
        """,
        },
    )
    assert decide(policy, [visa(value="urn:S1")], "S1", purpose="DUO:0000042").allow
    assert not decide(policy, [visa(value="urn:S2")], "S2", purpose="DUO:0000042").allow
    assert decide(policy, [visa(value="urn:S2")], "S2", purpose="DUO:0000006").allow


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("EGAD5*", "EGAD50*", True),
        ("EGAD5*", "EGAD6*", False),
        ("A?C", "AB*", True),
        ("A?C", "ABD", False),
        ("A*", "*B", True),
        ("ABC", "ABC", True),
        ("AB", "ABC", False),
        ("A*Z", "A*Y", False),
        ("X??", "X*9", True),
    ],
)
def test_dataset_pattern_overlap_check(a: str, b: str, overlap: bool) -> None:
    assert globs_overlap(a, b) is overlap
    assert globs_overlap(b, a) is overlap


def test_linked_identity_visas_count_only_through_the_link(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "d.yaml": """
        datasets:
          RA:
            description: registered access
            read: {registered_access: }
        """
        },
    )
    visas = bona_fide(sub="alice-ls")
    assert not decide(policy, visas, "RA").allow
    assert decide(policy, [*visas, link([(LS, "alice-ls")])], "RA").allow


def test_loading_the_same_files_gives_the_same_version_and_an_edit_changes_it(tmp_path: Path) -> None:
    files = {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET}
    first = load(tmp_path / "a", files)
    second = load(tmp_path / "b", files)
    assert first.version == second.version and first.version.startswith("sha256:")
    changed = load(tmp_path / "c", {**files, "lists.yaml": LISTS.replace("ki.se", "ku.dk")})
    assert changed.version != first.version


def test_load_error_is_raised_for_a_policy_without_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="no policy files"):
        load(tmp_path, {"README.md": "not a policy"})
