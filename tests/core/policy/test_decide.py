"""The evaluator: allow/deny, effective expiry, basis, reasons, holder and identity linking, DUO."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.core.identity_graph import IdentityGraph
from broker.core.policy.compile import PolicySet
from broker.core.policy.decision import Code
from tests.core.policy.support import (
    BROKER,
    DAC,
    DAY,
    GRANT_DATASET,
    HOLDER,
    LISTS,
    LS,
    NOW,
    bona_fide,
    link,
    load,
    visa,
)

TERMS = """
data_use_terms:
  DUO:0000042: {label: general research use}
  DUO:0000006: {label: health/medical/biomedical research, parent: DUO:0000042}
  DUO:0000007: {label: disease-specific research, parent: DUO:0000006}
  MONDO:0004992: {label: cancer, parent: DUO:0000007}
  MONDO:0008903: {label: lung cancer, parent: MONDO:0004992}
  MONDO:0005015: {label: diabetes mellitus, parent: DUO:0000007}
"""

MIXED = """
datasets:
  RA:
    description: registered access
    read: {registered_access: {issuers: list:ls_login}}
  CANCER:
    description: cancer research only, granted by a DAC
    read: {visa: {type: ControlledAccessGrants, value: "const:https://ega.example/datasets/${dataset}", by: dac}}
    data_use: MONDO:0004992
  EITHER:
    description: a grant, or registered access
    read:
      any_of:
        - visa: {type: ControlledAccessGrants, value: "const:https://ega.example/datasets/${dataset}", by: dac}
        - registered_access:
  OLD:
    description: assertions younger than 30 days only
    read: {visa: {type: ControlledAccessGrants, value: "const:https://ega.example/datasets/${dataset}", by: dac}}
    max_assertion_age: 30d
"""


@pytest.fixture
def policy(tmp_path: Path) -> PolicySet:
    return load(
        tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET, "mixed.yaml": MIXED, "terms.yaml": TERMS}
    )


def decide(policy: PolicySet, visas, dataset="EGAD0001", **kw):
    kw.setdefault("holder", HOLDER)
    kw.setdefault("now", NOW)
    return policy.decide(visas, kw.pop("graph", None), dataset, **kw)


def test_allow_carries_expiry_basis_entry_and_version(policy: PolicySet) -> None:
    grant = visa(jti="g1", exp=NOW + 5 * DAY)
    decision = decide(policy, [grant])
    assert decision.allow and decision.reasons == ()
    assert decision.expires_at == NOW + 5 * DAY
    assert [(b.use, b.jti, b.iss, b.type) for b in decision.basis] == [
        ("grant", "g1", BROKER, "ControlledAccessGrants")
    ]
    assert decision.policy_version == policy.version
    assert decision.entry is not None and decision.entry.startswith("dataset EGAD0001 (")
    assert decision.to_json()["basis"][0]["requirement"] == "read"


def test_the_longest_lived_of_several_matching_visas_is_used(policy: PolicySet) -> None:
    short, long = visa(jti="short", exp=NOW + DAY), visa(jti="long", exp=NOW + 9 * DAY)
    decision = decide(policy, [short, long])
    assert decision.expires_at == NOW + 9 * DAY and decision.basis[0].jti == "long"


def test_expired_visas_never_count_even_if_handed_in(policy: PolicySet) -> None:
    decision = decide(policy, [visa(exp=NOW)])
    assert not decision.allow and decision.codes == (Code.EXPIRED,)


def test_valid_for_requires_the_access_to_last(policy: PolicySet) -> None:
    grant = visa(exp=NOW + 3600)
    assert decide(policy, [grant], valid_for=3599).allow
    denied = decide(policy, [grant], valid_for=3600)
    assert not denied.allow and denied.codes == (Code.EXPIRES_TOO_SOON,)


def test_max_assertion_age_bounds_expiry_and_refuses_old_assertions(policy: PolicySet) -> None:
    fresh = visa(value="https://ega.example/datasets/OLD", asserted=NOW - 10 * DAY, exp=NOW + 90 * DAY)
    decision = decide(policy, [fresh], "OLD")
    assert decision.allow and decision.expires_at == NOW + 20 * DAY
    stale = visa(value="https://ega.example/datasets/OLD", asserted=NOW - 31 * DAY, exp=NOW + 90 * DAY)
    assert decide(policy, [stale], "OLD").codes == (Code.ASSERTION_TOO_OLD,)


def test_unknown_dataset_and_action(policy: PolicySet) -> None:
    assert decide(policy, [visa()], "EGAD0002").codes == (Code.UNKNOWN_DATASET,)
    assert decide(policy, [visa()], "EGAD0001", action="write").codes == (Code.UNKNOWN_ACTION,)
    assert decide(policy, [visa()], "").codes == (Code.UNKNOWN_DATASET,)


def test_missing_visa_and_no_matching_visa_reasons_name_the_requirement(policy: PolicySet) -> None:
    missing = decide(policy, [])
    assert missing.codes == (Code.MISSING_VISA,)
    assert missing.reasons[0].requirement == "read"
    assert "no ControlledAccessGrants visa" in missing.reasons[0].message
    wrong = decide(policy, [visa(source="https://ega-archive.org/dacs/EGAC00001000009", jti="w")])
    assert wrong.codes == (Code.NO_MATCHING_VISA,)
    assert "jti 'w'" in wrong.reasons[0].message and "source" in wrong.reasons[0].message


def test_visas_of_another_identity_need_a_link(policy: PolicySet) -> None:
    grant = visa(iss=BROKER, sub="alice-2", jti="g")
    assert decide(policy, [grant]).codes == (Code.NOT_LINKED,)
    linker = link([(BROKER, "alice-2")], exp=NOW + 2 * DAY, jti="l")
    decision = decide(policy, [grant, linker])
    assert decision.allow
    assert decision.expires_at == NOW + 2 * DAY  # the link visa is used, so its exp bounds the access
    assert [(b.use, b.jti) for b in decision.basis] == [("grant", "g"), ("link", "l")]


def test_a_graph_passed_by_the_caller_is_used(policy: PolicySet) -> None:
    grant = visa(iss=BROKER, sub="alice-2")
    linker = link([(BROKER, "alice-2")])
    graph = IdentityGraph.from_visas([linker])
    assert decide(policy, [grant], graph=graph).allow
    assert not decide(policy, [grant], graph=IdentityGraph.from_visas([])).allow


def test_link_chains_are_followed(policy: PolicySet) -> None:
    grant = visa(iss=BROKER, sub="c", jti="g")
    first = link([(BROKER, "b")], jti="l1", exp=NOW + 8 * DAY)
    second = link([(BROKER, "c")], iss=BROKER, sub="b", jti="l2", exp=NOW + 3 * DAY)
    decision = decide(policy, [grant, first, second])
    assert decision.allow and decision.expires_at == NOW + 3 * DAY
    assert {b.jti for b in decision.basis if b.use == "link"} == {"l1", "l2"}


def test_holder_is_inferred_when_all_visas_share_one_identity(policy: PolicySet) -> None:
    assert policy.decide([visa()], None, "EGAD0001", now=NOW).allow
    both = [visa(), visa(sub="bob")]
    decision = policy.decide(both, None, "EGAD0001", now=NOW)
    assert not decision.allow and Code.HOLDER_UNKNOWN in decision.codes


def test_holder_is_inferred_across_linked_identities(policy: PolicySet) -> None:
    visas = [visa(sub="alice-2"), link([(BROKER, "alice-2")])]
    assert policy.decide(visas, None, "EGAD0001", now=NOW).allow


def test_any_of_uses_the_first_alternative_met(policy: PolicySet) -> None:
    visas = [visa(value="https://ega.example/datasets/EITHER", exp=NOW + DAY, jti="g"), *bona_fide(iss=BROKER)]
    decision = decide(policy, visas, "EITHER")
    assert decision.allow and [b.jti for b in decision.basis] == ["g"]
    only_bona_fide = decide(policy, bona_fide(iss=BROKER), "EITHER")
    assert only_bona_fide.allow and {b.jti for b in only_bona_fide.basis} == {"terms", "status"}


def test_all_of_expiry_is_the_minimum_over_its_parts(policy: PolicySet) -> None:
    terms, status = bona_fide()
    status = visa(status.visa.type, status.visa.value, status.visa.source, "so", iss=LS, exp=NOW + 2 * DAY)
    decision = decide(policy, [terms, status], "RA", holder=(LS, "alice"))
    assert decision.allow and decision.expires_at == NOW + 2 * DAY


def test_deny_of_any_of_gives_the_reasons_of_every_alternative(policy: PolicySet) -> None:
    decision = decide(policy, bona_fide(iss=BROKER)[:1], "EITHER")
    assert not decision.allow
    assert [r.requirement for r in decision.reasons] == ["read.any_of[0]", "read.any_of[1].all_of[1]"]


@pytest.mark.parametrize(
    ("purpose", "code"),
    [
        ("MONDO:0004992", None),
        ("MONDO:0008903", None),
        (None, Code.PURPOSE_MISSING),
        ("", Code.PURPOSE_MISSING),
        ("DUO:0000006", Code.PURPOSE_INCOMPATIBLE),
        ("DUO:0000042", Code.PURPOSE_INCOMPATIBLE),
        ("MONDO:0005015", Code.PURPOSE_INCOMPATIBLE),
        ("MONDO:9999999", Code.PURPOSE_UNKNOWN),
    ],
)
def test_data_use_purpose_is_checked_apart_from_visas(policy: PolicySet, purpose: str | None, code: str) -> None:
    grant = visa(value="https://ega.example/datasets/CANCER")
    decision = decide(policy, [grant], "CANCER", purpose=purpose)
    assert decision.allow is (code is None)
    if code is not None:
        assert decision.codes == (code,) and decision.reasons[0].requirement == "data_use"


def test_purpose_and_visa_reasons_are_both_reported(policy: PolicySet) -> None:
    decision = decide(policy, [], "CANCER", purpose="DUO:0000042")
    assert set(decision.codes) == {Code.MISSING_VISA, Code.PURPOSE_INCOMPATIBLE}


def test_datasets_without_data_use_ignore_the_purpose(policy: PolicySet) -> None:
    assert decide(policy, [visa()], purpose="anything at all").allow


def test_conditioned_visa_counts_only_with_its_condition_met_and_the_satisfier_is_used(policy: PolicySet) -> None:
    conditions = (((("type", "AffiliationAndRole"), ("value", "const:faculty@ki.se")),),)
    grant = visa(jti="g", conditions=conditions)
    affiliation = visa("AffiliationAndRole", "faculty@ki.se", "https://ki.se/", "system", exp=NOW + 4 * DAY, jti="a")
    decision = decide(policy, [grant, affiliation])
    assert decision.allow and decision.expires_at == NOW + 4 * DAY
    assert [(b.use, b.jti) for b in decision.basis] == [("grant", "g"), ("condition", "a")]
    assert decide(policy, [grant]).codes == (Code.CONDITIONS_UNMET,)


def test_decision_json_is_plain_data(policy: PolicySet) -> None:
    import json

    text = json.dumps(decide(policy, [visa(source=DAC)]).to_json())
    assert '"allow": true' in text
