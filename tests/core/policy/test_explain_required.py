"""Explanations (every visa considered, and why) and the required-visas document."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.core.models import REGISTERED_ACCESS_DOI
from broker.core.policy.compile import PolicySet
from broker.core.policy.explain import explain, render_text
from broker.core.policy.required import FORMAT, UnknownDataset, required_visas
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

EXTRA = """
datasets:
  RA:
    description: registered access from Life Science Login
    read: {registered_access: {issuers: list:ls_login, status: {by: [so, system]}}}
  NORDIC:
    description: Nordic faculty, young assertions
    read: {visa: {type: AffiliationAndRole, role: faculty, affiliation: list:nordic, description: Nordic faculty}}
    max_assertion_age: 365d
    data_use: DUO:0000006
data_use_terms:
  DUO:0000042: {label: GRU}
  DUO:0000006: {label: HMB, parent: DUO:0000042}
  DUO:0000007: {label: DS, parent: DUO:0000006}
"""


@pytest.fixture
def policy(tmp_path: Path) -> PolicySet:
    return load(tmp_path, {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET, "extra.yaml": EXTRA})


def test_explanation_lists_every_visa_of_the_type_with_its_verdict(policy: PolicySet) -> None:
    visas = [
        visa(jti="ok", exp=NOW + 3 * DAY),
        visa(jti="other-dataset", value="https://ega.example/datasets/X"),
        visa(jti="expired", exp=NOW - 5),
        visa(jti="unlinked", sub="mallory"),
        visa("ResearcherStatus", REGISTERED_ACCESS_DOI, "https://s/", "so", jti="not-considered"),
    ]
    ex = explain(policy, visas, None, "EGAD0001", holder=HOLDER, now=NOW)
    assert ex.decision.allow and ex.trace is not None and ex.trace.met
    outcomes = {v.visa.jti: v.outcome for v in ex.trace.verdicts}
    assert outcomes == {"ok": "matched", "other-dataset": "mismatch", "expired": "expired", "unlinked": "not_linked"}
    text = render_text(ex)
    assert "ALLOW" in text and "access valid until" in text
    assert "+ #0 jti 'ok'" in text and "x #1 jti 'other-dataset'" in text and "! #2 jti 'expired'" in text
    assert "not-considered" not in text
    assert "basis (visas used):" in text


def test_explanation_of_a_deny_gives_reasons_and_the_tree(policy: PolicySet) -> None:
    old = visa(
        "AffiliationAndRole", "faculty@ki.se", "https://ki.se/", "system", iss=LS, asserted=NOW - 400 * DAY, jti="old"
    )
    ex = explain(policy, [old], None, "NORDIC", holder=(LS, "alice"), now=NOW, purpose="DUO:0000042")
    assert not ex.decision.allow
    assert set(ex.decision.codes) == {"assertion_too_old", "purpose_incompatible"}
    text = render_text(ex)
    assert "DENY" in text and "Nordic faculty" in text and "max_assertion_age (365d)" in text
    assert "data use: purpose DUO:0000042 (GRU) is not within DUO:0000006 (HMB)" in text
    as_json = ex.to_json()
    assert as_json["rule"]["met"] is False and as_json["rule"]["visas"][0]["outcome"] == "assertion_too_old"
    assert as_json["rule"]["reasons"][0]["code"] == "assertion_too_old"


def test_explanation_of_linked_and_unknown(policy: PolicySet) -> None:
    visas = [*bona_fide(sub="alice-ls"), link([(LS, "alice-ls")], jti="l")]
    ex = explain(policy, visas, None, "RA", holder=HOLDER, now=NOW)
    assert ex.decision.allow
    assert "linked to the holder by 1 LinkedIdentities visa(s)" in render_text(ex)
    unknown = explain(policy, visas, None, "NOPE", holder=HOLDER, now=NOW)
    assert unknown.trace is None and unknown.decision.codes == ("unknown_dataset",)
    assert "unknown_dataset" in render_text(unknown)


def test_required_visas_document_for_a_grant(policy: PolicySet) -> None:
    document = required_visas(policy, "EGAD0001")
    assert document["format"] == FORMAT and document["dataset"] == "EGAD0001"
    assert document["policy_version"] == policy.version and document["data_use"] is None
    visa_doc = document["requires"]["visa"]
    assert visa_doc == {
        "id": "read",
        "type": "ControlledAccessGrants",
        "value": {"one_of": ["https://ega.example/datasets/EGAD0001"]},
        "source": {"one_of": [DAC, "https://ega-archive.org/dacs/EGAC00001000002"], "lists": ["trusted_dacs"]},
        "by": {"one_of": ["dac"]},
        "issuers": {"one_of": [BROKER], "lists": ["dac_issuers"]},
    }


def test_required_visas_document_for_registered_access_and_data_use(policy: PolicySet) -> None:
    ra = required_visas(policy, "RA")["requires"]
    assert [part["visa"]["type"] for part in ra["all_of"]] == ["AcceptedTermsAndPolicies", "ResearcherStatus"]
    assert ra["all_of"][1]["visa"]["by"] == {"one_of": ["so", "system"]}
    assert ra["all_of"][0]["visa"]["value"] == {"one_of": [REGISTERED_ACCESS_DOI]}
    nordic = required_visas(policy, "NORDIC")
    assert nordic["requires"]["visa"]["affiliation"] == {"one_of": ["uio.no", "ki.se"], "lists": ["nordic"]}
    assert nordic["requires"]["visa"]["issuers"] == {"any_trusted": True}
    assert nordic["data_use"] == {
        "term": "DUO:0000006",
        "label": "HMB",
        "purpose_required": True,
        "compatible_purposes": ["DUO:0000006", "DUO:0000007"],
    }
    assert nordic["max_assertion_age_seconds"] == 365 * DAY


def test_required_visas_for_unknown_dataset_or_action(policy: PolicySet) -> None:
    with pytest.raises(UnknownDataset):
        required_visas(policy, "NOPE")
    with pytest.raises(UnknownDataset, match="grants only: read"):
        required_visas(policy, "EGAD0001", "write")


def test_required_document_uses_the_same_matchers_as_decisions(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        {
            "p.yaml": """
        templates:
          t:
            description: pattern values
            dataset_pattern: P*
            read: {visa: {type: ResearcherStatus, value: ["pattern:urn:${dataset}:*", "split_pattern:x,${dataset}"]}}
        """
        },
    )
    document = required_visas(policy, "P1")
    assert document["requires"]["visa"]["value"] == {"patterns": ["urn:P1:*"], "split_patterns": ["x,P1"]}
    assert policy.decide(
        [visa("ResearcherStatus", "urn:P1:any", "https://s/", "so")], None, "P1", holder=HOLDER, now=NOW
    ).allow
    assert policy.decide(
        [visa("ResearcherStatus", "a;x,P1;b", "https://s/", "so")], None, "P1", holder=HOLDER, now=NOW
    ).allow
    assert not policy.decide(
        [visa("ResearcherStatus", "urn:P2:any", "https://s/", "so")], None, "P1", holder=HOLDER, now=NOW
    ).allow
