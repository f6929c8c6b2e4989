"""Issue 11, item 12 (GA-17) at the gateway: the passport authorizer hands the policy the
identity binding of the broker that signed the passport, so an LS-Login-shaped passport
(a REMS visa with the passport's ``sub``) opens the dataset exactly when that broker's
``trust.brokers[].identity_binding`` is ``same_sub``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from broker.core.policy.compile import PolicySet
from broker.gateway.passport_authorizer import PassportAuthorizer
from tests.core.policy.support import load
from tests.core.test_identity_binding import LS_SUB, POLICY, ls_affiliation, rems_grant, trust
from tests.support.forge import NOW, Signer, TestKey, make_verifier

LS = "https://login.aai.lifescience-ri.eu/oidc/"
REMS = "https://rems.example/"


@dataclass
class Fixed:
    """A policy source that always serves one rule set."""

    current: PolicySet


@pytest.fixture(scope="module")
def signers() -> tuple[Signer, Signer, Signer]:
    return (
        Signer(LS, TestKey.generate("RS256", "ls-rsa1"), LS + "jwk"),
        Signer(REMS, TestKey.generate("ES256", "rems-1"), REMS + "api/jwk"),
        Signer("https://other-broker.example/", TestKey.generate("ES256", "other-1")),
    )


@pytest.mark.parametrize("binding,status,code", [("linked", 403, "not_linked"), ("same_sub", 200, "allowed")])
def test_ga17_gateway_authorizer_applies_the_brokers_identity_binding(
    signers: tuple[Signer, Signer, Signer],
    tmp_path_factory: pytest.TempPathFactory,
    binding: str,
    status: int,
    code: str,
) -> None:
    ls, rems, other = signers
    policy = load(tmp_path_factory.mktemp("policy"), {"policy.yaml": POLICY})
    authorizer = PassportAuthorizer(
        verifier=make_verifier(trust(ls, rems, other, binding)),
        policies=Fixed(policy),
        own_issuer="https://broker.binding.test/",
        clock=lambda: float(NOW),
    )
    passport = ls.passport([ls_affiliation(ls), rems_grant(rems)], sub=LS_SUB)
    decision = authorizer.authorize(passport, "LB-201403262", "sample.cram")
    assert (decision.status, decision.reason) == (status, code), decision
    if decision.allow:
        assert decision.subject == LS_SUB
