"""Issue 11, item 12 (THREAT-MODEL GA-17): whose visas count for the passport holder.

Real Life Science Login passports relay REMS visas whose ``iss`` is REMS and whose ``sub`` is
the same LS identifier as the passport's, without a LinkedIdentities visa. Per trusted broker,
``identity_binding`` says whether those count: ``linked`` (default, SPEC-DIGEST C19 read
strictly: they do not) or ``same_sub`` (they do, the broker vouches for its ``sub``). A visa of
another ``sub`` never counts without a trusted link, in either mode.

Everything runs for real: settings -> ``TrustConfig.from_settings`` -> ``Verifier`` (signed
tokens, pinned keys) -> the policy engine on a policy directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.core.cache import VerifiedCache
from broker.core.models import IdentityBinding, PassportResult, Reason, Visa
from broker.core.policy.compile import PolicySet
from broker.core.policy.explain import explain
from broker.core.verify import Verifier
from broker.settings import SettingsError, build_settings
from broker.trust.config import TrustConfig
from broker.trust.settings import TrustedBrokerSettings, TrustedIssuerSettings, TrustSettings
from tests.core.policy.support import load
from tests.support.forge import NOW, Signer, TestKey, make_verifier

LS = "https://login.aai.lifescience-ri.eu/oidc/"
REMS = "https://rems.example/"
OTHER_BROKER = "https://other-broker.example/"
OWN = "https://broker.binding.test/"
LS_SUB = "5f2c8e1d4b9a0c3e7f6a1b2d3c4e5f60718293a4@lifescience-ri.eu"
DATASET_VALUE = "https://rems.example/catalogue/urn:nbn:fi:lb-201403262"

POLICY = f"""
lists:
  rems: [{REMS}]
  ls_login: [{LS}]
datasets:
  LB-201403262:
    description: A REMS-governed dataset, granted by a REMS ControlledAccessGrants visa
    read:
      visa:
        type: ControlledAccessGrants
        value: const:{DATASET_VALUE}
        source: const:https://rems.example/
        by: dac
        issuers: list:rems
"""


@pytest.fixture(scope="module")
def ls() -> Signer:
    """LS Login: a trusted broker (signs passports) and visa issuer, RS256 like the real one."""
    return Signer(LS, TestKey.generate("RS256", "ls-rsa1"), LS + "jwk")


@pytest.fixture(scope="module")
def rems() -> Signer:
    return Signer(REMS, TestKey.generate("ES256", "rems-1"), REMS + "api/jwk")


@pytest.fixture(scope="module")
def other_broker() -> Signer:
    return Signer(OTHER_BROKER, TestKey.generate("ES256", "other-1"))


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> PolicySet:
    return load(tmp_path_factory.mktemp("binding-policy"), {"policy.yaml": POLICY})


def trust(ls: Signer, rems: Signer, other_broker: Signer, binding: str) -> TrustConfig:
    """The trust section as an operator writes it, with LS Login's binding set to ``binding``."""
    settings = TrustSettings(
        visa_issuers=[
            TrustedIssuerSettings(iss=LS, jwks=ls.key.jwks()),
            TrustedIssuerSettings(iss=REMS, jwks=rems.key.jwks()),
        ],
        brokers=[
            TrustedBrokerSettings(iss=LS, jwks=ls.key.jwks(), identity_binding=binding),  # type: ignore[arg-type]
            TrustedBrokerSettings(iss=OTHER_BROKER, jwks=other_broker.key.jwks()),
        ],
    )
    return TrustConfig.from_settings(settings, OWN)


def rems_grant(rems: Signer, sub: str = LS_SUB, **visa: Any) -> str:
    obj = {
        "type": "ControlledAccessGrants",
        "asserted": NOW - 3600,
        "value": DATASET_VALUE,
        "source": "https://rems.example/",
        "by": "dac",
        **visa,
    }
    return rems.visa(sub, obj)


def ls_affiliation(ls: Signer, sub: str = LS_SUB) -> str:
    obj = {
        "type": "AffiliationAndRole",
        "asserted": NOW - 3600,
        "value": "faculty@helsinki.fi",
        "source": "https://www.helsinki.fi",
        "by": "system",
    }
    return ls.visa(sub, obj, header={**ls.header(typ="JWT")})


def allowed(policy: PolicySet, result: PassportResult) -> Any:
    assert result.ok, result.error
    return policy.decide(
        result.accepted,
        dataset="LB-201403262",
        holder=(result.iss, result.sub),
        now=NOW,
        identity_binding=result.identity_binding,
    )


def test_ga17_ls_login_passport_with_rems_visa_is_denied_when_binding_is_linked(
    ls: Signer, rems: Signer, other_broker: Signer, policy: PolicySet
) -> None:
    verifier = make_verifier(trust(ls, rems, other_broker, "linked"))
    result = verifier.verify_passport(ls.passport([ls_affiliation(ls), rems_grant(rems)], sub=LS_SUB))
    assert result.identity_binding is IdentityBinding.LINKED
    assert {v.iss for v in result.accepted} == {LS, REMS}  # both visas are valid; the question is whose
    decision = allowed(policy, result)
    assert not decision.allow
    assert [r.code for r in decision.reasons] == ["not_linked"]


def test_ga17_ls_login_passport_with_rems_visa_is_allowed_when_binding_is_same_sub(
    ls: Signer, rems: Signer, other_broker: Signer, policy: PolicySet
) -> None:
    verifier = make_verifier(trust(ls, rems, other_broker, "same_sub"))
    result = verifier.verify_passport(ls.passport([ls_affiliation(ls), rems_grant(rems)], sub=LS_SUB))
    assert result.identity_binding is IdentityBinding.SAME_SUB
    decision = allowed(policy, result)
    assert decision.allow, decision.reasons
    assert [(b.use, b.iss) for b in decision.basis] == [("grant", REMS)]
    # explain agrees with decide when given the same binding
    explained = explain(
        policy,
        result.accepted,
        dataset="LB-201403262",
        holder=(LS, LS_SUB),
        now=NOW,
        identity_binding=result.identity_binding,
    )
    assert explained.decision.allow


@pytest.mark.parametrize("binding", ["linked", "same_sub"])
def test_ga17_visa_of_another_sub_never_counts_without_a_link(
    ls: Signer, rems: Signer, other_broker: Signer, policy: PolicySet, binding: str
) -> None:
    verifier = make_verifier(trust(ls, rems, other_broker, binding))
    foreign = rems_grant(rems, sub="mallory@lifescience-ri.eu")
    result = verifier.verify_passport(ls.passport([foreign], sub=LS_SUB))
    decision = allowed(policy, result)
    assert not decision.allow and [r.code for r in decision.reasons] == ["not_linked"]
    # A sub that merely starts or ends like the holder's is another sub.
    near = rems_grant(rems, sub=LS_SUB + " ")
    assert not allowed(policy, verifier.verify_passport(ls.passport([near], sub=LS_SUB))).allow


def test_ga17_binding_is_per_broker(ls: Signer, rems: Signer, other_broker: Signer, policy: PolicySet) -> None:
    verifier = make_verifier(trust(ls, rems, other_broker, "same_sub"))
    # The same REMS visa in a passport of a broker left at the default binding does not count.
    result = verifier.verify_passport(other_broker.passport([rems_grant(rems)], sub=LS_SUB))
    assert result.identity_binding is IdentityBinding.LINKED
    assert not allowed(policy, result).allow


@pytest.mark.parametrize("binding,accepted", [("linked", False), ("same_sub", True)])
def test_ga17_conditions_met_by_a_same_sub_visa_of_another_issuer_only_with_same_sub(
    ls: Signer, rems: Signer, other_broker: Signer, policy: PolicySet, binding: str, accepted: bool
) -> None:
    conditioned = rems_grant(
        rems, conditions=[[{"type": "AffiliationAndRole", "value": "pattern:faculty@*", "by": "const:system"}]]
    )
    verifier = make_verifier(trust(ls, rems, other_broker, binding))
    result = verifier.verify_passport(ls.passport([ls_affiliation(ls), conditioned], sub=LS_SUB))
    assert result.ok
    grant = [v for v in result.accepted if v.iss == REMS]
    if accepted:
        assert grant and result.relies_on[grant[0]][0].iss == LS
        assert allowed(policy, result).allow
    else:
        assert grant == [] and [r.reason for r in result.rejected] == [Reason.CONDITIONS_UNMET]


def test_ga17_binding_is_part_of_the_trust_version_so_cached_results_do_not_outlive_it(
    ls: Signer, rems: Signer, other_broker: Signer
) -> None:
    linked, same_sub = (trust(ls, rems, other_broker, b) for b in ("linked", "same_sub"))
    assert linked.version != same_sub.version
    cache = VerifiedCache(64)
    token = ls.passport([rems_grant(rems)], sub=LS_SUB)
    first = make_verifier(linked, cache=cache).verify_passport(token)
    second = make_verifier(same_sub, cache=cache).verify_passport(token)
    assert first.identity_binding is IdentityBinding.LINKED
    assert second.identity_binding is IdentityBinding.SAME_SUB


def test_ga17_identity_binding_setting_is_read_from_yaml_and_checked(tmp_path: Path) -> None:
    def with_binding(value: object) -> dict[str, Any]:
        key = TestKey.generate("ES256", "b1")
        return {"trust": {"brokers": [{"iss": LS, "jwks": key.jwks(), "identity_binding": value}]}}

    settings = build_settings(with_binding("same_sub"), "broker.yaml")
    assert settings.trust.brokers[0].identity_binding == "same_sub"
    config = TrustConfig.from_settings(settings.trust, settings.issuer)
    broker = config.broker(LS)
    assert broker is not None and broker.identity_binding is IdentityBinding.SAME_SUB
    assert build_settings({"trust": {"brokers": [{"iss": LS, "jwks": TestKey.generate("ES256", "b2").jwks()}]}})
    for bad in ("SAME_SUB", "sub", True):
        with pytest.raises(SettingsError) as info:
            build_settings(with_binding(bad), "broker.yaml")
        assert info.value.key == "trust.brokers[0].identity_binding"


def test_ga17_visa_list_without_a_passport_is_bound_strictly(ls: Signer, rems: Signer, other_broker: Signer) -> None:
    verifier: Verifier = make_verifier(trust(ls, rems, other_broker, "same_sub"))
    result = verifier.verify_visas([rems_grant(rems)])
    assert result.identity_binding is IdentityBinding.LINKED and isinstance(result.accepted[0], Visa)
