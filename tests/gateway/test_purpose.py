"""A request declares its data-use purpose (GA4GH-Purpose header, DRS body, signed URL), and the
policy engine decides on it: a dataset whose policy names a DUO term is refused without a
compatible purpose, over every route (data, decision endpoint, DRS GET/POST, signed URLs)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from broker.core.policy.reload import PolicyStore
from broker.gateway import signed_urls
from broker.gateway.drs import encode_object_id
from broker.gateway.passport_authorizer import PassportAuthorizer
from broker.gateway.paths import ObjectRef
from broker.gateway.service import PURPOSE_HEADER, Refusal, parse_purpose
from tests.gateway.conftest import AUTH, Stack
from tests.gateway.support import ServerThread, build_app
from tests.support.forge import NOW, Signer, TestKey, make_verifier, trust_config, visa_object

DAC = "https://dac.example/"
DRS = "/ga4gh/drs/v1"
HMB, GRU, DS, CANCER = "DUO:0000006", "DUO:0000042", "DUO:0000007", "MONDO:0004992"
POLICY = f"""
datasets:
  ds1:
    description: Health, medical or biomedical research only, for holders of a DAC grant
    data_use: {HMB}
    read:
      visa:
        type: ControlledAccessGrants
        value: const:{DAC}ds1
        source: const:{DAC}
        by: dac
  ds2:
    description: No data use terms, for holders of a DAC grant
    read:
      visa:
        type: ControlledAccessGrants
        value: const:{DAC}ds2
        source: const:{DAC}
        by: dac
data_use_terms:
  {GRU}: {{label: general research use}}
  {HMB}: {{label: health/medical/biomedical research, parent: {GRU}}}
  {DS}: {{label: disease-specific research, parent: {HMB}}}
  {CANCER}: {{label: cancer, parent: {DS}}}
"""


# ------------------------------------------------------------------ the header's grammar


@pytest.mark.parametrize("good", [HMB, GRU, CANCER, "DUO:0000000", "MONDO:9999999"])
def test_well_formed_purposes_are_accepted_as_they_are(good: str) -> None:
    assert parse_purpose(good) == good
    assert parse_purpose(None) is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " DUO:0000006",
        "DUO:0000006 ",
        "duo:0000006",
        "DUO_0000006",
        "DUO:000006",
        "DUO:00000066",
        "DUO:0000006,DUO:0000042",
        "DUO:0000006, DUO:0000042",
        "HP:0000006",
        "DUO:000000\u0666",  # an Arabic-Indic digit: \d would take it
        "DUO:\uff10000006",  # a fullwidth zero
        "DUO:0000006\n",
        "http://purl.obolibrary.org/obo/DUO_0000006",
        "DUO:" + "0" * 10_000,
    ],
)
def test_malformed_purposes_are_400_invalid_purpose(bad: str) -> None:
    with pytest.raises(Refusal) as caught:
        parse_purpose(bad)
    assert caught.value.status == 400 and caught.value.code == "invalid_purpose"


@given(st.text(max_size=40))
def test_only_duo_or_mondo_with_seven_ascii_digits_is_a_purpose(text: str) -> None:
    shaped = (text.startswith("DUO:") and len(text) == 11) or (text.startswith("MONDO:") and len(text) == 13)
    shaped = shaped and all(c in "0123456789" for c in text.split(":", 1)[1])
    try:
        assert parse_purpose(text) == text and shaped
    except Refusal as refusal:
        assert not shaped and refusal.code == "invalid_purpose"


# ------------------------------------------------------------------ signed URLs bind the purpose


KEY = b"k" * 32
REF = ObjectRef("ds1", "dir/a.bin")


@given(st.sampled_from([HMB, GRU, CANCER]), st.sampled_from([None, HMB, GRU, CANCER, DS]))
def test_a_signed_url_verifies_only_with_the_purpose_it_was_minted_for(minted: str, presented: str | None) -> None:
    query = signed_urls.sign(KEY, REF, NOW + 60, purpose=minted)
    assert f"purpose={minted}&" in query
    assert signed_urls.verify_url(KEY, REF, query, "GET", NOW, 300) == signed_urls.VerifiedUrl(NOW + 60, minted)
    swapped = query.replace(f"purpose={minted}&", "" if presented is None else f"purpose={presented}&")
    if presented == minted:
        return
    with pytest.raises(signed_urls.SignatureError) as caught:
        signed_urls.verify_url(KEY, REF, swapped, "GET", NOW, 300)
    assert caught.value.code == "bad_signature"


def test_a_purpose_added_to_a_url_minted_without_one_breaks_its_signature() -> None:
    query = signed_urls.sign(KEY, REF, NOW + 60)
    assert signed_urls.verify_url(KEY, REF, query, "GET", NOW, 300).purpose is None
    with pytest.raises(signed_urls.SignatureError):
        signed_urls.verify_url(KEY, REF, query.replace("&", f"&purpose={HMB}&"), "GET", NOW, 300)
    for extra in ("&purpose=", f"&purpose={HMB}&purpose={HMB}", "&x=1"):
        with pytest.raises(signed_urls.SignatureError) as caught:
            signed_urls.verify_url(KEY, REF, query + extra, "GET", NOW, 300)
        assert caught.value.code == "invalid_signed_url"


# ------------------------------------------------------------------ table authorizer: what reaches the decision


def test_the_header_reaches_the_authorizer_and_a_bad_one_is_400(stack: Stack) -> None:
    url = stack.url + "/data/hmb1/cohort.bin"
    stack.authorizer.purposes_seen.clear()
    r = requests.get(url, headers={**AUTH, PURPOSE_HEADER: HMB}, timeout=5)
    assert r.status_code == 200 and r.content == stack.files.nested
    assert stack.authorizer.purposes_seen == [HMB]
    r = requests.get(url, headers=AUTH, timeout=5)
    assert r.status_code == 403 and r.json()["error"] == "purpose_missing"
    r = requests.get(url, headers={**AUTH, PURPOSE_HEADER: "DUO:6"}, timeout=5)
    assert r.status_code == 400 and r.json()["error"] == "invalid_purpose"
    assert stack.authorizer.purposes_seen == [HMB, None]  # a malformed purpose is refused before any decision


def test_htsget_style_query_parameters_sit_next_to_a_bearer_and_a_purpose(stack: Stack) -> None:
    url = stack.url + "/data/hmb1/cohort.bin?format=BAM&referenceName=chr1&start=0&end=10"
    r = requests.get(url, headers={**AUTH, PURPOSE_HEADER: HMB, "Range": "bytes=0-9"}, timeout=5)
    assert r.status_code == 206 and r.content == stack.files.nested[:10]
    # a parameter of a signed URL next to a bearer is still ambiguous, and refused
    for signed in ("expires=1", "signature=x", f"purpose={HMB}", "%65xpires=1"):
        r = requests.get(stack.url + f"/data/hmb1/cohort.bin?{signed}", headers=AUTH, timeout=5)
        assert r.status_code == 400 and r.json()["error"] == "invalid_request", signed


def test_nginx_auth_request_forwards_the_purpose_to_the_decision(stack: Stack) -> None:
    url = stack.front + "/files/hmb1/cohort.bin"
    assert requests.get(url, headers=AUTH, timeout=5).status_code == 403
    r = requests.get(url, headers={**AUTH, PURPOSE_HEADER: HMB}, timeout=5)
    assert r.status_code == 200 and r.content == stack.files.nested
    assert requests.get(url, headers={**AUTH, PURPOSE_HEADER: GRU}, timeout=5).status_code == 403
    assert requests.get(url, headers={**AUTH, PURPOSE_HEADER: "nonsense"}, timeout=5).status_code == 403


def test_cors_preflight_lets_a_viewer_send_the_purpose(stack: Stack) -> None:
    r = requests.options(
        stack.url + "/data/hmb1/cohort.bin",
        headers={
            "Origin": "https://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, range, ga4gh-purpose",
        },
        timeout=5,
    )
    assert r.status_code == 204 and "GA4GH-Purpose" in r.headers["Access-Control-Allow-Headers"]


# ------------------------------------------------------------------ the real policy engine decides


@dataclass
class Policy:
    broker: Signer
    server: ServerThread
    audit: list

    def passport(self, *grants: str) -> str:
        visas = [self.broker.visa("alice", visa_object(value=f"{DAC}{g}", source=DAC), jti=f"visa-{g}") for g in grants]
        return self.broker.passport(visas, sub="alice")

    def bearer(self, purpose: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.passport('ds1', 'ds2')}"}
        if purpose is not None:
            headers[PURPOSE_HEADER] = purpose
        return headers

    def decisions(self) -> list:
        return [e for e in self.audit if e.kind == "decision"]


@pytest.fixture
def policy(stack: Stack, tmp_path: Path) -> Iterator[Policy]:
    broker = Signer("https://broker.example/", TestKey.generate(), jku="https://broker.example/jwks.json")
    verifier = make_verifier(trust_config([broker], [broker]))
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "datasets.yaml").write_text(POLICY)
    store = PolicyStore.open(tmp_path / "policies")
    authorizer = PassportAuthorizer(verifier, store, own_issuer=broker.iss, clock=lambda: NOW)
    audit: list = []
    app = build_app(stack.settings, authorizer, tmp_path / "gw", audit=audit.append)
    app.extensions["gateway"].clock = lambda: NOW
    with ServerThread(app) as server:
        yield Policy(broker, server, audit)


CASES = [(None, 403, "purpose_missing"), (HMB, 200, None), (CANCER, 200, None), (GRU, 403, "purpose_incompatible")]


@pytest.mark.parametrize("purpose,status,code", CASES)
def test_data_route_needs_a_compatible_purpose(policy: Policy, stack: Stack, purpose, status, code) -> None:  # type: ignore[no-untyped-def]
    r = requests.get(policy.server.url + "/data/ds1/small.bin", headers=policy.bearer(purpose), timeout=10)
    assert r.status_code == status
    if code is None:
        assert r.content == stack.files.small
    else:
        assert r.json()["error"] == code and stack.files.small[:16] not in r.content
        assert r.json()["required"]["data_use"]["term"] == HMB
    decision = policy.decisions()[-1]
    assert decision.purpose == purpose and decision.outcome == ("allow" if code is None else "deny")


def test_a_dataset_without_data_use_terms_takes_any_purpose_or_none(policy: Policy) -> None:
    for purpose in (None, GRU, CANCER):
        r = requests.get(policy.server.url + "/data/ds2/secret.bin", headers=policy.bearer(purpose), timeout=10)
        assert r.status_code == 200


def test_an_unknown_term_is_refused_by_the_policy(policy: Policy) -> None:
    r = requests.get(policy.server.url + "/data/ds1/small.bin", headers=policy.bearer("DUO:0000099"), timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "purpose_unknown"


@pytest.mark.parametrize("purpose,status,code", CASES)
def test_decision_endpoint_takes_the_purpose_of_the_original_request(policy: Policy, purpose, status, code) -> None:  # type: ignore[no-untyped-def]
    headers = {**policy.bearer(purpose), "X-Original-URI": "/files/ds1/small.bin", "X-Original-Method": "GET"}
    r = requests.get(policy.server.url + "/gateway/decision", headers=headers, timeout=10)
    assert r.status_code == status and r.headers["X-Auth-Reason"] == (code or "allowed")
    bad = {**headers, PURPOSE_HEADER: "DUO 0000006"}
    r = requests.get(policy.server.url + "/gateway/decision", headers=bad, timeout=10)
    assert r.status_code == 403 and r.headers["X-Auth-Reason"] == "invalid_purpose"


@pytest.mark.parametrize("purpose,status,code", CASES)
def test_drs_post_declares_the_purpose_in_the_body(policy: Policy, stack: Stack, purpose, status, code) -> None:  # type: ignore[no-untyped-def]
    url = policy.server.url + f"{DRS}/objects/{encode_object_id(ObjectRef('ds1', 'small.bin'))}"
    body: dict[str, Any] = {"passports": [policy.passport("ds1")]}
    if purpose is not None:
        body["purpose"] = purpose
    r = requests.post(url, json=body, timeout=10)
    assert r.status_code == status
    if code is None:
        assert r.json()["size"] == len(stack.files.small)
    else:
        assert r.json()["error"] == code and r.json()["status_code"] == 403
    # the header works for DRS too; header and body must agree
    r = requests.get(url, headers=policy.bearer(purpose), timeout=10)
    assert r.status_code == status
    r = requests.post(url, json={**body, "purpose": HMB}, headers={PURPOSE_HEADER: CANCER}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "purpose_conflict"
    r = requests.post(url, json={**body, "purpose": ["DUO:0000006"]}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_purpose"


def test_a_drs_signed_url_carries_the_purpose_it_was_allowed_for(policy: Policy, stack: Stack) -> None:
    url = policy.server.url + f"{DRS}/objects/{encode_object_id(ObjectRef('ds1', 'small.bin'))}/access/https"
    r = requests.post(url, json={"passports": [policy.passport("ds1")]}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "purpose_missing"
    r = requests.post(url, json={"passports": [policy.passport("ds1")], "purpose": GRU}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "purpose_incompatible"
    r = requests.post(url, json={"passports": [policy.passport("ds1")], "purpose": CANCER}, timeout=10)
    assert r.status_code == 200, r.text
    signed = r.json()["url"]
    assert f"purpose={CANCER}&" in signed
    got = requests.get(signed, timeout=10)
    assert got.status_code == 200 and got.content == stack.files.small
    use = policy.decisions()[-1]
    assert use.route == "data" and use.reason == "signed_url" and use.purpose == CANCER
    # the purpose cannot be changed or dropped, and a contradicting header is refused
    parts = urlsplit(signed)
    for query in (parts.query.replace(CANCER, HMB), parts.query.replace(f"purpose={CANCER}&", "")):
        r = requests.get(f"{policy.server.url}{parts.path}?{query}", timeout=10)
        assert r.status_code == 403 and r.json()["error"] == "bad_signature"
    r = requests.get(signed, headers={PURPOSE_HEADER: HMB}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "purpose_mismatch"
    assert requests.get(signed, headers={PURPOSE_HEADER: CANCER}, timeout=10).status_code == 200
    # minted over GET with the header: the same binding
    r = requests.get(url, headers=policy.bearer(HMB), timeout=10)
    assert f"purpose={HMB}&" in r.json()["url"]
